"""Work sent from outside a plan carries the caller's query priority; a plan runs its queries at it
(the ``recording_engine`` fixture stands in for a model: what is tested is the requests' priorities)."""

import asyncio
import contextvars
import threading

from teola.optimizer.ir import Graph, Node, Op, QueryInput, Ref
from teola.optimizer.ops import DecodeArgs
from teola.optimizer.values import ChatMessage, Prompt, Sampling
from teola.runtime.clients import EmbeddingClient, LLMClient
from teola.runtime.query_priority import prioritized, query_priority, request_priority
from teola.runtime.runtime import get_runtime

PROMPT = Prompt(messages=(ChatMessage("user", "hi"),))


def test_the_priority_is_0_unless_set_and_nests():
    assert query_priority() == 0 and request_priority() == (0, 0)
    with prioritized(-3):
        assert request_priority() == (-3, 0)
        with prioritized(-5):
            assert query_priority() == -5
        assert query_priority() == -3
    assert query_priority() == 0


def test_threads_started_with_the_context_inherit_it():
    seen = []
    with prioritized(-2):
        context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(lambda: seen.append(query_priority()),))
    thread.start()
    thread.join()
    assert seen == [-2]


def test_client_requests_carry_the_callers_priority_sync_and_async(recording_engine):
    engine = recording_engine
    client, embedder = LLMClient(get_runtime(), engine), EmbeddingClient(get_runtime(), engine)
    assert client.text(PROMPT, Sampling(max_tokens=4)) == "answer"
    with prioritized(-4):
        client.text(PROMPT, Sampling(max_tokens=4))
        embedder.embed(["a text"])

    async def from_a_loop() -> str:
        with prioritized(-7):
            return await client.atext(PROMPT, Sampling(max_tokens=4))

    assert asyncio.run(from_a_loop()) == "answer"
    assert engine.seen == [
        ("TokenizeRequest", (0, 0)), ("GenerateRequest", (0, 0)),
        ("TokenizeRequest", (-4, 0)), ("GenerateRequest", (-4, 0)), ("EmbedRequest", (-4, 0)),
        ("TokenizeRequest", (-7, 0)), ("GenerateRequest", (-7, 0)),
    ]


def test_a_plan_run_inside_prioritized_code_runs_its_query_at_that_priority(recording_engine):
    engine = recording_engine
    graph = Graph()
    graph.add(Node("answer", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), engine.id))
    graph.set_output("answer", Ref("answer", "text"))
    runtime = get_runtime()
    scheduler = runtime.prepare(graph)
    with prioritized(-6):
        assert runtime.execute(scheduler, {"query_str": [1, 2]})["answer"] == "answer"
    assert runtime.execute(scheduler, {"query_str": [1, 2]}, priority=3)["answer"] == "answer"
    [(_, first), (_, second)] = engine.seen
    assert first[0] == -6 and second[0] == 3
