"""Each query's trace reaches the code that ran it, however many queries overlap (zero-model engines)."""

import asyncio

from teola.optimizer.ir import Graph, Node, Op, QueryInput, Ref
from teola.optimizer.ops import CALLABLE, FnArgs
from teola.runtime.runtime import Runtime
from teola.runtime.traces import record_traces


async def _slowly(q: str) -> str:
    await asyncio.sleep(0.02 if q == "slow" else 0.0)
    return q


def _plan() -> Graph:
    g = Graph()
    g.add(Node("work", Op.CALL, {"q": QueryInput("query_str")}, ("out",), FnArgs(_slowly), CALLABLE))
    g.set_output("answer", Ref("work", "out"))
    return g


def test_overlapping_queries_each_deliver_their_own_trace_to_their_own_recording():
    runtime = Runtime()
    try:
        scheduler = runtime.prepare(_plan())

        async def one(q):
            with record_traces() as traces:
                outputs = await runtime.aexecute(scheduler, {"query_str": q})
            return outputs["answer"], traces

        async def both():
            return await asyncio.gather(one("slow"), one("fast"))

        (slow, slow_traces), (fast, fast_traces) = asyncio.run(both())
        assert (slow, fast) == ("slow", "fast")
        assert len(slow_traces) == len(fast_traces) == 1
        assert slow_traces[0].total > fast_traces[0].total and slow_traces[0] is not fast_traces[0]
        with record_traces() as traces:
            runtime.execute(scheduler, {"query_str": "a"})
            runtime.execute(scheduler, {"query_str": "b"})
        assert [t.spans[0].node for t in traces] == ["work", "work"]
        runtime.execute(scheduler, {"query_str": "unrecorded"})  # nobody asked: nothing is kept
        assert len(traces) == 2
    finally:
        runtime.close()
