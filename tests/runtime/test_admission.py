"""Admission, deadlines, cancellation and a soak, on the runtime with zero-model engines defined here.

What a caller is promised: every query gets its own answer or a clear error (overload, timeout),
nothing hangs, a query that is given up stops its engine work, and nothing is left behind.
"""

import asyncio
import gc
import random
import time

import pytest

from teola.optimizer.ir import Graph, Node, Op, QueryInput, Ref
from teola.runtime.admission import AdmissionGate, QueryLimits
from teola.optimizer.ops import CALLABLE, EmbedArgs, EngineId, EngineKind, FnArgs
from teola.runtime.engine_scheduler import BatchingScheduler, EngineScheduler
from teola.runtime.requests import EmbedRequest
from teola.runtime.engines.base import BatchEngine, EngineCapabilities
from teola.runtime.errors import OverloadedError, QueryTimeoutError
from teola.runtime.graph_scheduler import QueryTrace
from teola.runtime.runtime import Runtime


class SlowEcho(BatchEngine):
    """Answers each request of a batch with ``echo(request)`` after ``seconds`` per batch (at most 4 a batch)."""

    capabilities = EngineCapabilities(max_batch=4)

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def run_batch(self, requests):
        await asyncio.sleep(self.seconds)
        return [f"echo({r})" for r in requests]


def _embedding(name: str) -> EngineId:
    return EngineId(EngineKind.EMBEDDING, name)


def _echo(seconds: float) -> BatchingScheduler:
    return BatchingScheduler(_embedding("echo"), SlowEcho(seconds), EmbedRequest)


class Hanging(EngineScheduler):
    """Never answers; records the primitives cancelled while waiting."""

    def __init__(self) -> None:
        super().__init__(_embedding("hang"))
        self.cancelled: list[str] = []

    async def execute(self, request):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(request.id.split(":", 1)[1])
            raise


def _plan(engine: str) -> Graph:
    g = Graph()
    g.add(Node("work", Op.EMBED, {"text": QueryInput("query_str")}, ("vector",), EmbedArgs(), _embedding(engine)))
    g.set_output("answer", Ref("work", "vector"))
    return g


@pytest.fixture
def runtime():
    runtime = Runtime(QueryLimits(max_in_flight=4, max_waiting=4))
    runtime.engines.update({"echo": _echo(0.05), "hang": Hanging()})
    yield runtime
    runtime.close()


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_in_flight must be >= 1"):
        QueryLimits(max_in_flight=0)
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        QueryLimits(timeout_s=0)


def test_queries_beyond_those_running_and_waiting_are_refused_at_once_with_a_clear_error(runtime):
    scheduler = runtime.prepare(_plan("echo"))

    async def burst():
        return await asyncio.gather(*(runtime.aexecute(scheduler, {"query_str": f"q{i}"}) for i in range(12)),
                                    return_exceptions=True)

    results = asyncio.run(burst())
    answered = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, OverloadedError)]
    assert len(answered) == 8 and len(refused) == 4  # 4 running + 4 waiting; the rest turned away
    assert [outputs["answer"] for outputs in answered] == [f"echo(q{i})" for i in range(8)]
    assert "max_in_flight=4, max_waiting=4" in str(refused[0]) and "retry later" in str(refused[0])
    assert (runtime.gate.running, runtime.gate.waiting, runtime.gate.refused) == (0, 0, 4)


def test_a_query_past_its_deadline_fails_naming_what_hung_and_its_engine_work_is_cancelled(runtime):
    runtime.set_limits(QueryLimits(timeout_s=0.2))
    start = time.perf_counter()
    with pytest.raises(QueryTimeoutError, match="within 0.2 s .* unfinished: work"):
        runtime.execute(runtime.prepare(_plan("hang")), {"query_str": "q"})
    assert time.perf_counter() - start < 5
    assert runtime.engines["hang"].cancelled == ["work"]
    outputs = runtime.execute(runtime.prepare(_plan("echo")), {"query_str": "next"})  # the runtime goes on
    assert outputs == {"answer": "echo(next)"}


def test_a_cancelled_caller_cancels_its_query_and_its_engine_work(runtime):
    scheduler = runtime.prepare(_plan("hang"))

    async def give_up():
        task = asyncio.ensure_future(runtime.aexecute(scheduler, {"query_str": "q"}))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(give_up())
    deadline = time.monotonic() + 5
    while not runtime.engines["hang"].cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runtime.engines["hang"].cancelled == ["work"]
    assert runtime.gate.running == 0


def test_soak_thousands_of_queries_above_capacity_each_answered_as_its_own_or_refused():
    """3000 queries arrive at about 1800/s (in 1.6 s); the engine serves about 320/s (4 a batch, 12.5 ms a batch)."""
    runtime = Runtime(QueryLimits(max_in_flight=32, max_waiting=64))
    runtime.engines["echo"] = _echo(0.0125)
    scheduler = runtime.prepare(_plan("echo"))
    rng = random.Random(0)

    async def one(i):
        try:
            outputs = await runtime.aexecute(scheduler, {"query_str": f"query-{i}"})
        except OverloadedError:
            return "overloaded"
        return "answered" if outputs["answer"] == f"echo(query-{i})" else "wrong answer"

    async def soak(count):
        tasks = []
        for i in range(count):
            tasks.append(asyncio.ensure_future(one(i)))
            if i % 30 == 29:
                await asyncio.sleep(rng.expovariate(100))
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)

    try:
        outcomes = asyncio.run(soak(3000))
        tasks_left = runtime.run(_other_tasks())
    finally:
        runtime.close()
    counts = {kind: outcomes.count(kind) for kind in ("answered", "overloaded", "wrong answer")}
    assert sum(counts.values()) == 3000  # none lost: every query came back one way or the other
    assert counts["wrong answer"] == 0
    assert counts["answered"] >= 96 and counts["overloaded"] > 0
    assert (runtime.gate.running, runtime.gate.waiting, runtime.gate.refused) == (0, 0, counts["overloaded"])
    assert tasks_left == ["engine:echo"]  # only the engine's worker: no query's task lingers
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, QueryTrace)]  # no query's state is kept


async def _other_tasks():
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())


def test_the_gate_alone_admits_in_arrival_order():
    async def main():
        gate, order = AdmissionGate(QueryLimits(max_in_flight=1, max_waiting=8)), []

        async def query(i):
            order.append(i)
            await asyncio.sleep(0.01)

        await asyncio.gather(*(gate.run(lambda i=i: query(i)) for i in range(5)))
        return order

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def _calling(fn) -> Graph:
    """A plan of one opaque call: ``fn(query_str=...)``."""
    g = Graph()
    g.add(Node("outer", Op.CALL, {"query_str": QueryInput("query_str")}, ("out",), FnArgs(fn), CALLABLE))
    g.set_output("answer", Ref("outer", "out"))
    return g


@pytest.mark.parametrize("caller", ["thread", "coroutine"])
def test_a_query_started_inside_a_query_shares_its_slot_instead_of_waiting_forever_for_one(caller):
    # one slot and no waiting room: were the inner query admitted on its own, it would wait for the
    # slot its parent holds (or be refused)
    runtime = Runtime(QueryLimits(max_in_flight=1, max_waiting=0))
    runtime.engines["echo"] = _echo(0.01)
    inner = runtime.prepare(_plan("echo"))
    seen = {}

    def in_a_thread(query_str):
        seen["running"] = runtime.gate.running
        return runtime.execute(inner, {"query_str": query_str + "!"})["answer"]

    async def on_the_loop(query_str):
        seen["running"] = runtime.gate.running
        return (await runtime.aexecute(inner, {"query_str": query_str + "!"}))["answer"]

    outer = runtime.prepare(_calling(in_a_thread if caller == "thread" else on_the_loop))
    try:
        future = runtime.submit(runtime.aexecute(outer, {"query_str": "q"}))
        outputs = future.result(timeout=10)
        assert outputs["answer"] == "echo(q!)" and seen["running"] == 1
        # the outer queries themselves are still bounded: with the slot taken, one more is refused
        async def two_at_once():
            return await asyncio.gather(runtime.aexecute(outer, {"query_str": "a"}), runtime.aexecute(outer, {"query_str": "b"}),
                                        return_exceptions=True)

        answered, refused = runtime.run(two_at_once())
        assert answered["answer"] == "echo(a!)" and isinstance(refused, OverloadedError)
        assert runtime.gate.running == 0
    finally:
        runtime.close()
