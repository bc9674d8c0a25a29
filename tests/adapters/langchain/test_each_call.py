"""Tracing a ``.map()`` of an LLM call (pure graph logic: which maps are one batched call, and its modules)."""

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from teola.adapters.langchain.each_call import mapped_call
from teola.adapters.langchain.tracer import read_runnable
from teola.optimizer.ir import ModuleKind
from teola.optimizer.lowering import lower
from teola.optimizer.values import SKIPPED

PROMPT = ChatPromptTemplate.from_messages([("human", "Situate: {chunk}")])


def _served() -> ChatOpenAI:
    return ChatOpenAI(model="m", base_url="http://127.0.0.1:1/v1", api_key="k", temperature=0.0)


def test_a_map_of_a_whole_llm_call_on_a_served_model_is_one_batched_call():
    call = mapped_call((PROMPT | _served() | StrOutputParser()).map())
    assert call is not None and call.parser is not None and call.length == 3
    assert mapped_call((PROMPT | FakeListChatModel(responses=["x"])).map()) is None  # not on an engine
    assert mapped_call((PROMPT | _served() | StrOutputParser() | RunnableLambda(str.upper)).map()) is None  # more
    assert mapped_call(PROMPT | _served()) is None  # not a map


def test_the_map_reads_into_a_batched_generate_and_a_finish_that_runs_on_no_items():
    chain = RunnableLambda(lambda question: [{"chunk": question}] * 2) | (PROMPT | _served() | StrOutputParser()).map()
    reading = read_runnable(chain)
    [generate] = [n for n in reading.graph if n.op is ModuleKind.GENERATE]
    assert generate.args.batch and list(generate.inputs) == ["items"]
    finish = reading.graph[generate.name.removesuffix(".llm")]
    assert finish.args.runs_on_skipped == ("text",) and finish.args.fn(SKIPPED) == []  # no items, no call
    assert finish.args.fn(["a", "b"]) == ["a", "b"]  # the parser's own parse of each
    prompts = generate.args.build_prompt(items=[{"chunk": "one"}, {"chunk": "two"}])
    assert [p.messages[-1].content for p in prompts] == ["Situate: one", "Situate: two"]
    assert reading.lowered[-1].endswith("(ChatPromptTemplate | ChatOpenAI | StrOutputParser).map()")
    lower(reading.graph).lint()
