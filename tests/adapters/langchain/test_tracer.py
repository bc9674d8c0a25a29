"""Tracing LCEL into module graphs (pure graph logic: LangChain's fake models stand in for engines)."""

import operator

import networkx as nx
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import (CommaSeparatedListOutputParser, JsonOutputParser, NumberedListOutputParser,
                                           StrOutputParser)
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from teola.adapters.langchain import UnsupportedRunnableError, level_graph, read_runnable
from teola.optimizer.ir import ModuleKind
from teola.optimizer.lowering import lower
from teola.optimizer.ops import EngineId, EngineKind
from teola.optimizer.passes import optimize_plan
from teola.optimizer.values import PromptPrefix


class EngineEmbedding(DeterministicFakeEmbedding):
    teola_engine: EngineId = EngineId(EngineKind.EMBEDDING, "embedding")


class EngineStore(InMemoryVectorStore):
    index_engine = EngineId(EngineKind.VECTOR_INDEX, "index:test")

    def to_documents(self, hits):
        return [Document(id=i, page_content=i) for i, _ in hits]


@pytest.fixture
def retriever():
    store = EngineStore(EngineEmbedding(size=8))
    store.add_documents([Document(id="a", page_content="alpha"), Document(id="b", page_content="beta")])
    return store.as_retriever(search_kwargs={"k": 2})


PROMPT = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "Q: {question}\nContext: {context}")])


def _modules(reading, kind):
    return [n for n in reading.graph if n.op is kind]


def test_rag_chain_lowers_retriever_and_prompt_model_parser_into_one_llm_call(retriever, fake_chat):
    chain = ({"context": operator.itemgetter("question") | retriever | (lambda docs: " ".join(d.page_content for d in docs)),
              "question": operator.itemgetter("question")} | PROMPT | fake_chat | StrOutputParser())
    reading = read_runnable(chain)
    [retrieve] = _modules(reading, ModuleKind.RETRIEVE)
    [generate] = _modules(reading, ModuleKind.GENERATE)
    assert retrieve.args.top_k == 2 and retrieve.args.index == EngineId(EngineKind.VECTOR_INDEX, "index:test")
    assert len(reading.lowered) == 2
    # the question is known from the input: it is the prefix's only input; the context is not
    assert len(generate.args.prefix.inputs) == 1
    question_var = generate.args.prefix.inputs[0]
    prefix = generate.args.prefix.build(**{question_var: "What is pass?"})
    assert isinstance(prefix, PromptPrefix)
    assert "Q: What is pass?" in prefix.prompt.messages[-1].content
    plan = optimize_plan(lower(reading.graph))
    assert any(n.meta.warm for n in plan)


def test_the_prompt_is_the_one_langchain_builds(retriever, fake_chat):
    chain = {"context": RunnableLambda(lambda x: "ctx"), "question": RunnablePassthrough()} | PROMPT | fake_chat
    reading = read_runnable(chain)
    [generate] = _modules(reading, ModuleKind.GENERATE)
    names = {"var0": "ctx", "var1": "q"} if generate.args.prefix.inputs == ("var1",) else {"var0": "q", "var1": "ctx"}
    prompt = generate.args.build_prompt(**names)
    native = PROMPT.invoke({"context": "ctx", "question": "q"}).to_messages()
    assert [m.content for m in prompt.messages] == [m.content for m in native]


@pytest.mark.parametrize("parser, text", [(StrOutputParser(), " plain "), (CommaSeparatedListOutputParser(), "a, b, c"),
                                          (JsonOutputParser(), 'Here: ```json\n{"answer": [1, 2]}\n```')])
def test_parsers_finish_the_llm_call_as_they_parse_natively_and_say_how_to_stream(parser, text, fake_chat):
    reading = read_runnable(ChatPromptTemplate.from_template("{question}") | fake_chat | parser)
    finish = reading.graph[reading.graph.outputs["output"].node]
    assert finish.args.fn(text) == parser.invoke(AIMessage(content=text))
    assert reading.final.parser is parser and reading.final.chat
    assert reading.graph[reading.final.decode].op is ModuleKind.GENERATE  # the decode keeps the call's name


def test_a_chain_whose_answer_is_not_an_llm_call_has_no_answer_stream(fake_chat):
    chain = ChatPromptTemplate.from_template("{question}") | fake_chat | RunnableLambda(str)
    assert read_runnable(chain).final is None


def test_the_first_items_of_a_line_list_stream_into_their_readers_and_the_decode_stops_after_them(retriever, fake_chat):
    queries = ChatPromptTemplate.from_template("Queries for {question}") | fake_chat
    chain = queries | NumberedListOutputParser() | operator.itemgetter(slice(3)) | retriever.map()
    reading = read_runnable(chain)
    [generate] = _modules(reading, ModuleKind.GENERATE)
    text = "Here:\n1. alpha\n2. beta\n3. gamma\n4. delta"
    assert generate.args.max_items == 3
    assert generate.args.parse(text) == (NumberedListOutputParser() | operator.itemgetter(slice(3))).invoke(text)
    plan = optimize_plan(lower(reading.graph))
    [decode] = [n for n in plan if n.meta.stop_after]
    assert decode.meta.stream and decode.meta.stop_after.items == 3
    assert len([n for n in plan if n.meta.items]) == 3  # one parse per item, each retrieved on its own


def test_lists_that_are_not_line_lists_or_not_cut_are_parsed_whole(fake_chat):
    model = fake_chat
    prompt = ChatPromptTemplate.from_template("{question}")
    for chain in (prompt | model | CommaSeparatedListOutputParser() | operator.itemgetter(slice(3)),
                  prompt | model | NumberedListOutputParser() | operator.itemgetter(slice(1, 3))):
        [generate] = _modules(read_runnable(chain), ModuleKind.GENERATE)
        assert generate.args.max_items is None


def test_assign_steps_reading_different_keys_are_independent(fake_chat):
    model = fake_chat
    first = ChatPromptTemplate.from_template("A {question}") | model | StrOutputParser()
    second = ChatPromptTemplate.from_template("B {question}") | model | StrOutputParser()
    join = ChatPromptTemplate.from_template("{question} {a} {b}") | model | StrOutputParser()
    chain = RunnablePassthrough.assign(a=first) | RunnablePassthrough.assign(b=second) | join
    reading = read_runnable(chain)
    dag = reading.graph.to_networkx()
    a, b, joined = [n.name for n in _modules(reading, ModuleKind.GENERATE)]
    assert not nx.has_path(dag, a, b) and not nx.has_path(dag, b, a)
    assert nx.has_path(dag, a, joined) and nx.has_path(dag, b, joined)


def test_unknown_steps_run_as_calls_and_the_output_dict_keeps_langchain_order():
    chain = RunnableParallel(x=RunnableLambda(lambda v: v + 1), y=RunnablePassthrough())
    reading = read_runnable(chain)
    calls = [n for n in reading.graph if n.op is ModuleKind.CALL]
    assert any(n.args.label == "dict" for n in calls)
    assert read_runnable(chain | RunnableLambda(str)).lowered == []


def test_level_graph_tags_children_as_langchain_does():
    seq = RunnableLambda(lambda v: v) | RunnableLambda(lambda v: v)
    assert [n.args.label for n in level_graph(seq)] == ["RunnableLambda", "RunnableLambda"]
    par = RunnableParallel(a=RunnablePassthrough(), b=RunnablePassthrough())
    assert [n.name for n in level_graph(par)] == ["key0", "key1", "merge"]


def test_a_non_runnable_is_refused_with_what_to_pass():
    with pytest.raises(UnsupportedRunnableError, match="LangChain runnable"):
        read_runnable("prompt | model")
