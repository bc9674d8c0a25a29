"""optimize() on streaming LlamaIndex query engines (``streaming=True``), on the real CPU engines:
the same tokens, one by one, the same sources and the same spans as the native engine streams."""

import asyncio
import gc
import logging
import time
import weakref

import pytest
from llama_index.core import get_response_synthesizer
from llama_index.core.indices.prompt_helper import PromptHelper
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.tools import QueryEngineTool

from teola.runtime.traces import record_traces
from teola_integrations.llama_index import optimize
from teola_integrations.tools.demo_app import ROUTER_TOOLS
from teola_integrations.tools.run_trees import traced

pytestmark = pytest.mark.engines


def _streaming_app(index, llm, kind):
    if kind == "one call":  # the starter tutorial's app: two nodes packed into one call
        return index.as_query_engine(llm=llm, similarity_top_k=2, streaming=True)
    if kind == "refine steps":  # the packed context needs a call, then a refine call: the last one streams
        synth = get_response_synthesizer(llm=llm, response_mode="compact", streaming=True,
                                          prompt_helper=PromptHelper(context_window=1100, num_output=48))
        return index.as_query_engine(llm=llm, similarity_top_k=4, response_synthesizer=synth)
    # more calls than the lowered steps: the calls after them run natively, the last one when it is read
    synth = get_response_synthesizer(llm=llm, response_mode="refine", streaming=True,
                                     prompt_helper=PromptHelper(num_output=48, chunk_size_limit=120))
    return index.as_query_engine(llm=llm, similarity_top_k=2, response_synthesizer=synth)


def _read(engine, question, asynchronous):
    """Ask, then read the answer token by token, as a streaming app does: the response and its tokens."""
    if not asynchronous:
        response = engine.query(question)
        return response, list(response.response_gen)

    async def read():
        response = await engine.aquery(question)
        return response, [token async for token in response.async_response_gen()]

    return asyncio.run(read())


def _seen(engine, app, question, asynchronous):
    """What a user and their tracing tools see of one streamed answer: the response's type, its tokens,
    sources and metadata; the spans and events, the callback events, the instrument tags."""
    with traced(app, {"session": "s-1"}) as (recorder, callbacks):
        response, tokens = _read(engine, question, asynchronous)
    return {"type": type(response).__name__, "tokens": tokens, "sources": [n.node.node_id for n in response.source_nodes],
            "metadata": response.metadata, "spans": recorder.tree(), "callbacks": callbacks.tree(),
            "tags": recorder.tag_sets()}


@pytest.mark.answers
@pytest.mark.parametrize("kind", ["one call", "refine steps", "past the steps"])
def test_a_streaming_query_engine_streams_the_native_tokens_with_the_native_spans(simple_index, llm, questions, kind):
    """The answer streams token by token from the engines, the response (``StreamingResponse``;
    ``AsyncStreamingResponse`` in an ``aquery``) carries the native sources and metadata, and tracing
    sees the native tree: the query's spans closed when ``query`` returns, the streamed LLM call's
    ``stream`` > ``stream_chat`` span (``astream`` > ``astream_chat``) outside them with one in-progress
    event per token, the calls the loop read before it inside ``get_response``."""
    app = _streaming_app(simple_index, llm, kind)
    fast = optimize(app)
    assert fast.fallbacks == []
    assert {node.name for node in fast.plan if node.meta.stream} >= {"synthesize.step0", "synthesize.step1"}
    question = questions[5].question
    _read(app, question, False)  # the prefix cache as warm for the native run as for Teola's
    for asynchronous in (False, True):
        native = _seen(app, app, question, asynchronous)
        teola = _seen(fast, app, question, asynchronous)
        assert teola == native, asynchronous
    assert len(native["tokens"]) > 1 and native["tags"] == {(("session", "s-1"),)}
    assert native["type"] == "AsyncStreamingResponse"
    assert (0, "TeolaLLM.astream", ("LLMPredictStartEvent",)) in native["spans"]  # the last call, read after the query
    if kind == "refine steps":  # a call the loop read before the last one
        assert (5, "TeolaLLM.astream", ("LLMPredictStartEvent",)) in native["spans"]


def _freed(ref: weakref.ref, within_s: float = 5.0) -> bool:
    """Whether what ``ref`` refers to is collected within ``within_s`` (the runtime's thread may still
    be leaving the task that made it)."""
    deadline = time.monotonic() + within_s
    while True:
        gc.collect()
        if ref() is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_stream_left_early_or_dropped_unread_stops_its_decode_and_frees_its_answer(simple_index, llm, questions):
    """A reader that stops aborts the decode; an answer nobody reads (natively its call never starts)
    is freed once dropped, though its query's decode was running, and the decode stops."""
    app = _streaming_app(simple_index, llm, "one call")
    fast = optimize(app)
    question = questions[3].question
    with record_traces() as traces:
        response = fast.query(question)
        tokens = response.response_gen
        first = next(tokens)
        tokens.close()  # the reader stops: the decode stops too, its request aborted
        dropped = weakref.ref(fast.query(question))
        assert _freed(dropped)
    _, native = _read(app, question, False)
    assert first == native[0]
    # the decodes never finished (a finished primitive is recorded): each stopped without its reader
    for trace in traces:
        assert "retrieve.search" in {s.node for s in trace.spans}
        assert "synthesize.step0" not in {s.node for s in trace.spans}
    _, again = _read(fast, question, False)
    assert again == native


def test_an_emptied_context_streams_the_native_empty_response(simple_index, llm, questions):
    app = simple_index.as_query_engine(llm=llm, similarity_top_k=2, streaming=True,
                                       node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=1.5)])
    question = questions[0].question
    _, native = _read(app, question, False)
    assert native == ["Empty Response"]
    assert _read(optimize(app), question, False)[1] == native
    assert asyncio.run(optimize(app).aquery(question)).__class__.__name__ == "AsyncStreamingResponse"


def test_a_streaming_engine_another_engine_asks_runs_its_synthesis_as_one_call(simple_index, llm, questions,
                                                                                chosen_by_hand, caplog):
    """A router's candidate answers the router, which hands its stream on: Teola streams only the
    answer of the engine it wraps, so the candidate's synthesis runs natively (its retrieval on Teola)."""
    tools = [QueryEngineTool.from_defaults(query_engine=simple_index.as_query_engine(llm=llm, similarity_top_k=2,
                                                                                     streaming=True),
                                           name=name, description=description) for name, description in ROUTER_TOOLS]
    app = RouterQueryEngine(chosen_by_hand(0), tools, llm=llm)
    with caplog.at_level(logging.WARNING, logger="teola.adapters.llama_index"):
        fast = optimize(app)
    assert any("streams the answer of an engine another one asks" in why for why in fast.fallbacks)
    question = questions[1].question
    _, native = _read(app, question, False)
    assert _read(fast, question, False)[1] == native
