"""Reading a LlamaIndex chat engine's turn (pure graph logic; the turns themselves run on the engines in
tests/teola_integrations/test_llama_index_chat.py)."""

from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import TextNode

from teola.adapters.llama_index import read_chat_engine
from teola.optimizer.ir import ModuleKind, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.values import SKIPPED


def _index() -> VectorStoreIndex:
    return VectorStoreIndex([TextNode(text="a"), TextNode(text="b")], embed_model=MockEmbedding(embed_dim=8))


def test_a_condense_question_turn_condenses_then_asks_its_query_engine_read_under_a_prefix(served_llm):
    reading = read_chat_engine(_index().as_chat_engine(chat_mode="condense_question", llm=served_llm))
    graph = reading.graph
    assert reading.fallbacks == [] and not reading.whole
    assert graph["condense"].op is ModuleKind.GENERATE
    assert graph["condense"].args.build_prompt(message="and then?", history=[]) is SKIPPED  # a first turn
    history = [ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="hello")]
    assert "and then?" in graph["condense"].args.build_prompt(message="and then?", history=history).messages[-1].content
    assert graph["query/retrieve"].inputs["query"] == Ref("question", "question")
    assert graph["reply"].inputs["response"] == Ref("query/synthesize", "response")
    assert len(reading.indexes) == 1
    lower(graph).lint()


def test_a_condense_question_engine_whose_query_engine_streams_runs_whole(served_llm):
    reading = read_chat_engine(_index().as_chat_engine(chat_mode="condense_question", llm=served_llm, streaming=True))
    assert reading.whole and [node.name for node in reading.graph] == ["reply"]
    assert reading.fallbacks == ["CondenseQuestionChatEngine runs unoptimized, as one call: its query engine streams "
                                 "(a turn turns that off while it asks)"]


def test_a_simple_turn_is_one_chat_call_on_the_prefix_messages_and_the_memory(served_llm):
    engine = _index().as_chat_engine(chat_mode="simple", llm=served_llm, system_prompt="Be brief.")
    reading = read_chat_engine(engine)
    graph = reading.graph
    assert reading.fallbacks == [] and [n.name for n in graph] == ["turn", "chat", "reply"]
    [messages] = graph["turn"].args.fn(message="hi", chat_history=None)[:1]
    assert (messages.role.value, messages.content) == ("system", "Be brief.")
    assert [(m.role.value, m.content) for m in engine.chat_history] == [("user", "hi")]  # stored as natively
    lower(graph).lint()
