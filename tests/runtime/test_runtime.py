"""A consumer that stops reading a stream stops the work behind it (zero-model engine defined here)."""

import asyncio
import time

from teola.optimizer.ir import Graph, Node, Op, QueryInput, Ref
from teola.optimizer.ops import DecodeArgs, EngineId, EngineKind, Meta
from teola.optimizer.values import Sampling
from teola.runtime.engine_scheduler import EngineScheduler
from teola.runtime.requests import GenerateRequest
from teola.runtime.runtime import get_runtime


ENDLESS = EngineId(EngineKind.LLM, "endless-llm")


class EndlessLLM(EngineScheduler):
    """Streams "tok " forever, 5 ms apart; records when a stream's request is closed early."""

    def __init__(self) -> None:
        super().__init__(ENDLESS)
        self.aborted = 0

    async def execute(self, request):
        raise TypeError("this engine only streams")

    async def stream(self, request):
        try:
            while True:
                await asyncio.sleep(0.005)
                yield "tok "
        finally:
            self.aborted += 1


def _streamed_answer() -> Graph:
    g = Graph()
    g.add(Node("answer", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), ENDLESS,
               meta=Meta(stream=True)))
    g.set_output("answer", Ref("answer", "text"))
    return g


def _wait_for(condition) -> bool:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_sync_reader_that_stops_early_cancels_the_decode_behind_a_streamed_answer():
    runtime, engine = get_runtime(), EndlessLLM()
    runtime.engines[engine.name] = engine
    outputs = runtime.execute(runtime.prepare(_streamed_answer()), {"query_str": [1, 2, 3]})
    stream = outputs["answer"]
    reader = runtime.iterate(stream.deltas())
    first = [next(reader) for _ in range(3)]
    assert all(delta.split() and set(delta.split()) == {"tok"} for delta in first)  # deltas may hold several tokens
    reader.close()
    assert _wait_for(lambda: engine.aborted == 1)
    assert _wait_for(lambda: stream.done) and stream.error is None
    grown = len(stream.text)
    time.sleep(0.05)
    assert len(stream.text) == grown  # nothing decodes any more


def test_an_async_reader_that_is_cancelled_stops_the_engine_stream():
    runtime, engine = get_runtime(), EndlessLLM()
    runtime.engines[engine.name] = engine

    async def read_a_little():
        async def deltas():
            async for delta in engine.stream(GenerateRequest(([1],), Sampling())):
                yield delta

        reader = runtime.aiterate(deltas())
        assert await anext(reader) == "tok "
        await reader.aclose()

    asyncio.run(read_a_little())
    assert _wait_for(lambda: engine.aborted == 1)
