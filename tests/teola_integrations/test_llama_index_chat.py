"""optimize() on LlamaIndex chat engines over the real corpus, on the real CPU engines: the same turns."""

import asyncio
import logging

import pytest
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.postprocessor import SimilarityPostprocessor

from teola.adapters.llama_index import compat as li
from teola.runtime.traces import record_traces
from teola_integrations.llama_index import TeolaChatEngine, optimize
from teola_integrations.tools.demo_app import CHAT_HISTORY
from teola_integrations.tools.run_trees import traced

pytestmark = pytest.mark.engines

FOLLOW_UP = "What happens to the return value then?"  # needs the turn before it to make sense


def _turn(response):
    """What a user reads of a turn: the answer, the sources' ids, and what the retriever was asked."""
    return str(response), [n.node.node_id for n in response.source_nodes], response.sources[0].raw_input


def _history(engine):
    return [(m.role.value, m.content) for m in engine.chat_history]


def _conversation(engine, turns, asynchronous=False):
    """The turns asked one after another on ``engine``'s own memory, from an empty one."""
    engine.reset()
    if asynchronous:
        async def talk():
            return [await engine.achat(turn) for turn in turns]

        return asyncio.run(talk())
    return [engine.chat(turn) for turn in turns]


CONDENSING = ("condense_plus_context", "condense_question")


@pytest.mark.answers
@pytest.mark.parametrize("mode", ["condense_plus_context", "context", "condense_question"])
def test_a_conversation_runs_as_primitives_with_the_same_turns_and_memory_as_native(simple_index, llm, questions, mode):
    """Two turns from an empty memory: the first has no history (nothing to condense), the second a
    follow-up the condensing engines turn into a standalone question before retrieving (a
    condense-question engine asks its query engine, lowered under the prefix ``query/``). Teola
    reads and extends the wrapped engine's own memory, as the native turns do."""
    chat_engine = simple_index.as_chat_engine(chat_mode=mode, llm=llm, similarity_top_k=2)
    fast = optimize(chat_engine)
    assert isinstance(fast, TeolaChatEngine) and fast.fallbacks == []
    ops = {n.name: n.op.value for n in fast.plan}
    inner = "query/" if mode == "condense_question" else ""
    assert ops[f"{inner}retrieve.embed"] == "embed" and ops[f"{inner}synthesize.step0"] == "decode"
    assert (ops.get("condense") == "decode") == (mode in CONDENSING)
    turns = [questions[1].question, FOLLOW_UP]
    _conversation(chat_engine, turns)  # vLLM's output for a cached prefix can differ from a cold run's: warm both
    native = [_turn(r) for r in _conversation(chat_engine, turns)]
    native_history = _history(chat_engine)
    assert len(native_history) == 4 and native[0] != native[1]  # short answers may begin alike: the whole turns
    with record_traces() as traces:
        assert [_turn(r) for r in _conversation(fast, turns)] == native
    assert _history(fast) == native_history
    condensed = ["condense" in {s.node for s in trace.spans} for trace in traces]
    assert condensed == ([False, True] if mode in CONDENSING else [False, False])
    if mode in CONDENSING:  # the retriever (the query engine) was asked the condensed question
        assert native[1][2].get("message", native[1][2].get("query")) != FOLLOW_UP
    assert [_turn(r) for r in _conversation(fast, turns, asynchronous=True)] == native
    assert _history(fast) == native_history


RETRIEVING = {"VectorIndexRetriever.retrieve", "CompactAndRefine.synthesize", "TeolaLLM.chat"}
# The spans and legacy callback events a turn of each chat mode reports (among others), natively.
TURN_REPORTS = {"condense_plus_context": (RETRIEVING | {"TeolaLLM.complete"}, {"retrieve", "synthesize", "llm"}),
                "context": (RETRIEVING, {"retrieve", "synthesize", "llm"}),
                "condense_question": (RETRIEVING | {"TeolaLLM.predict", "RetrieverQueryEngine.query"},
                                      {"retrieve", "synthesize", "llm", "query"}),
                "simple": ({"TeolaLLM.chat"}, {"llm"})}


@pytest.mark.parametrize("mode", list(TURN_REPORTS))
def test_span_and_event_handlers_see_the_chat_tree_llama_index_reports(simple_index, llm, questions, mode):
    """The chat span, the condensation's completion (a condense-question engine's predict, then its
    query engine's query span), the retrieval, embedding, synthesis and LLM spans under it (a simple
    engine's chat call alone), nested and named as natively with the same events and the instrument
    tags of the turn, sync and async; and the same legacy callback events."""
    chat_engine = simple_index.as_chat_engine(chat_mode=mode, llm=llm, similarity_top_k=2)
    fast = optimize(chat_engine)
    question = questions[5].question
    trees, callback_trees = {}, {}
    for name, engine in (("native", chat_engine), ("teola", fast)):
        for variant, ask in (("", engine.chat), (" async", lambda q, h: asyncio.run(engine.achat(q, h)))):
            with traced(chat_engine, {"session": "s-1"}) as (recorder, callbacks):
                ask(question, list(CHAT_HISTORY))
            trees[name + variant], callback_trees[name + variant] = recorder.tree(), callbacks.tree()
            assert recorder.tag_sets() == {(("session", "s-1"),)}, name + variant
    engine_name = type(chat_engine).__name__
    assert trees["native"][0][1] == f"{engine_name}.chat" and trees["native async"][0][1] == f"{engine_name}.achat"
    spans = {row[1] for row in trees["native"]}
    reported_spans, reported_events = TURN_REPORTS[mode]
    assert reported_spans <= spans
    assert ("TeolaLLM.complete" in spans) == (mode == "condense_plus_context")
    assert ("VectorIndexRetriever.retrieve" in spans) == (mode != "simple")
    assert "TeolaLLM.acomplete" in {row[1] for row in trees["native async"]} or mode != "condense_plus_context"
    assert trees["teola"] == trees["native"]
    assert trees["teola async"] == trees["native async"]
    assert reported_events <= {row[1] for row in callback_trees["native"]}
    assert callback_trees["teola"] == callback_trees["native"]
    assert callback_trees["teola async"] == callback_trees["native async"]


@pytest.mark.answers
def test_a_simple_chat_engines_turns_are_one_lowered_chat_call_with_the_same_answers_and_memory(simple_index, llm,
                                                                                                 questions):
    """``chat_mode="simple"`` (no retrieval) with a system prompt: two turns from an empty memory, sync
    and async, give the native answers and leave the native memory."""
    chat_engine = simple_index.as_chat_engine(chat_mode="simple", llm=llm, system_prompt="Answer in one sentence.")
    fast = optimize(chat_engine)
    assert fast.fallbacks == [] and {n.name: n.op.value for n in fast.plan}["chat"] == "decode"
    turns = [questions[1].question, FOLLOW_UP]
    _conversation(chat_engine, turns)
    native = [str(r) for r in _conversation(chat_engine, turns)]
    native_history = _history(chat_engine)
    assert len(native_history) == 4
    assert [str(r) for r in _conversation(fast, turns)] == native and _history(fast) == native_history
    assert [str(r) for r in _conversation(fast, turns, asynchronous=True)] == native
    assert _history(fast) == native_history


def test_a_chat_engine_teola_cannot_lower_runs_whole_as_one_call(simple_index, llm, questions, caplog):
    my_chat_engine = type("MyChatEngine", (SimpleChatEngine,), {})  # a user's own engine
    chat_engine = my_chat_engine.from_defaults(llm=llm)
    with caplog.at_level(logging.WARNING, logger="teola"):
        fast = optimize(chat_engine)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("teola")] == [f"teola: {fast.fallbacks[0]}"]
    assert fast.fallbacks[0].startswith("MyChatEngine runs unoptimized")
    assert [n.name for n in fast.plan] == ["reply"]
    question = questions[2].question
    chat_engine.chat(question, chat_history=list(CHAT_HISTORY))
    native = chat_engine.chat(question, chat_history=list(CHAT_HISTORY))
    assert str(fast.chat(question, chat_history=list(CHAT_HISTORY))) == str(native)


def _streamed_turn(engine, question, asynchronous):
    """A streamed turn after ``CHAT_HISTORY``, read to its end (which waits until the answer is
    stored): the response and its tokens."""
    if not asynchronous:
        response = engine.stream_chat(question, list(CHAT_HISTORY))
        return response, list(response.response_gen)

    async def turn():
        response = await engine.astream_chat(question, list(CHAT_HISTORY))
        return response, [token async for token in response.async_response_gen()]

    return asyncio.run(turn())


def _seen_streamed(engine, chat_engine, question, asynchronous):
    """What a user and their tracing tools see of a streamed turn: its tokens, sources and what the
    retriever was asked, the memory after it (from an empty one: a condense-question turn adds to the
    memory it has, whatever history it is given), the spans and events, the callback events, the tags."""
    chat_engine.reset()
    with traced(chat_engine, {"session": "s-1"}) as (recorder, callbacks):
        response, tokens = _streamed_turn(engine, question, asynchronous)
    return {"tokens": tokens, "sources": [n.node.node_id for n in response.source_nodes],
            "asked": [source.raw_input for source in response.sources], "memory": _history(chat_engine),
            "spans": recorder.tree(), "callbacks": callbacks.tree(), "tags": recorder.tag_sets()}


@pytest.mark.answers
@pytest.mark.parametrize("mode", ["condense_plus_context", "context", "condense_question", "simple"])
def test_a_streamed_turn_streams_the_native_tokens_and_keeps_the_native_memory_and_spans(simple_index, llm, questions,
                                                                                        mode):
    """``stream_chat``/``astream_chat`` run on the engines: the same tokens one by one, sources and
    memory (the answer stored once read), and the native tree (the turn's spans; a context or
    condense-question engine's answer ``stream`` > ``stream_chat`` under the writer thread's or task's
    span, where it is read; a simple engine's ``stream_chat`` under the turn's, where it is called).
    A condense-question engine's query engine streams only while the turn asks it, natively and in Teola."""
    chat_engine = simple_index.as_chat_engine(chat_mode=mode, llm=llm, similarity_top_k=2)
    fast = optimize(chat_engine)
    question = questions[3].question
    _streamed_turn(chat_engine, question, False)  # the prefix cache as warm for the native turn as for Teola's
    for asynchronous in (False, True):
        native = _seen_streamed(chat_engine, chat_engine, question, asynchronous)
        teola = _seen_streamed(fast, chat_engine, question, asynchronous)
        assert teola == native, asynchronous
    assert len(native["tokens"]) > 1 and native["memory"][-1] == ("assistant", "".join(native["tokens"]))
    rows = [row[:2] for row in native["spans"]]
    if mode == "simple":
        assert (1, "TeolaLLM.astream_chat") in rows and {n.name for n in fast.streamed_plan if n.meta.stream} == {"chat"}
        return
    writer = rows.index((1, "StreamingAgentChatResponse.awrite_response_to_history"))
    assert rows[writer + 1] == (2, "TeolaLLM.astream")  # the answer's call, under the task that reads it
    inner = "query/" if mode == "condense_question" else ""
    assert {n.name for n in fast.streamed_plan if n.meta.stream} >= {f"{inner}synthesize.step0"}
    if mode == "condense_question":
        assert (1, "RetrieverQueryEngine.aquery") in rows and native["asked"] != [{"query": question}]  # condensed
        assert not li.streams_its_answers(li.condense_question_parts(chat_engine).query_engine)  # left as it was
        assert str(fast.chat(question, list(CHAT_HISTORY))) == str(chat_engine.chat(question, list(CHAT_HISTORY)))


def test_a_streamed_turn_teola_cannot_lower_runs_natively_with_one_log_line_and_a_bad_message_is_refused(
        simple_index, llm, questions, caplog):
    """A condense-question engine whose query engine synthesizes by tree_summarize: its streamed turns
    run natively (Teola streams the refine loop's last call), said once; chat() stays lowered."""
    chat_engine = simple_index.as_chat_engine(chat_mode="condense_question", llm=llm, similarity_top_k=2,
                                              response_mode="tree_summarize")
    fast = optimize(chat_engine)
    assert fast.fallbacks == []
    question = questions[3].question
    native = "".join(chat_engine.stream_chat(question, list(CHAT_HISTORY)).response_gen)
    with caplog.at_level(logging.WARNING, logger="teola"):
        streamed = [fast.stream_chat(question, list(CHAT_HISTORY)) for _ in range(2)]
    assert ["".join(s.response_gen) for s in streamed] == [native, native]
    told = [r.getMessage() for r in caplog.records if r.name.startswith("teola")]
    assert len(told) == 1 and "CondenseQuestionChatEngine streams its turns natively" in told[0]
    assert "the 'compact' response mode" in told[0]
    assert fast.streamed_plan is None
    with pytest.raises(TypeError, match="takes the user's message as a str, got dict"):
        fast.chat({"text": question})


@pytest.mark.answers
def test_a_context_engine_answers_from_prev_chunks_where_it_retrieves_nothing_as_natively(simple_index, llm, questions):
    """ContextChatEngine's ``prev_chunks``: the nodes it answers from where its retrieval (here emptied
    by a postprocessor) leaves none; an engine that takes none refuses them, as natively."""
    chat_engine = simple_index.as_chat_engine(chat_mode="context", llm=llm, similarity_top_k=2,
                                              node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=1.1)])
    fast = optimize(chat_engine)
    assert fast.fallbacks == []
    question = questions[1].question
    chunks = simple_index.as_retriever(similarity_top_k=2).retrieve(question)
    chat_engine.chat(question, list(CHAT_HISTORY), chunks)
    native = chat_engine.chat(question, list(CHAT_HISTORY), chunks)
    assert [n.node.node_id for n in native.source_nodes] == [n.node.node_id for n in chunks]
    assert _turn(fast.chat(question, list(CHAT_HISTORY), chunks)) == _turn(native)
    assert _turn(asyncio.run(fast.achat(question, list(CHAT_HISTORY), prev_chunks=chunks))) == _turn(native)
    with pytest.raises(TypeError, match="CondensePlusContextChatEngine takes no prev_chunks"):
        optimize(simple_index.as_chat_engine(llm=llm)).chat(question, prev_chunks=chunks)
