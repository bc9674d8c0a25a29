"""The runtime's own cost per query: the demo app's primitive graph on zero-cost engines.

Every engine answers at once, so what remains is Teola's: dispatching primitives, the hop onto
the runtime's event loop, batching queues and the thread pool for local work.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any, Sequence

from tqdm import tqdm

from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.ops import EngineId, EngineKind, RetrieveArgs, SynthesizeArgs
from teola.optimizer.values import Sampling
from teola.runtime.engine_scheduler import BatchingScheduler, EngineScheduler
from teola.runtime.engines.base import BatchEngine
from teola.runtime.requests import EmbedRequest, EngineRequest, GenerateRequest, SearchRequest, TokenizeRequest
from teola.runtime.runtime import Runtime

EMBEDDING = EngineId(EngineKind.EMBEDDING, "embedding")
INDEX = EngineId(EngineKind.VECTOR_INDEX, "index")
LLM = EngineId(EngineKind.LLM, "llm")


class EchoEngine(BatchEngine):
    """A zero-cost batch engine: returns each request as its result, without touching a thread."""

    async def run_batch(self, requests: Sequence[Any]) -> list[Any]:
        return list(requests)


class EchoLLM(EngineScheduler):
    """A zero-cost LLM scheduler: prefill returns the prompts, decode an empty answer each."""

    async def execute(self, request: EngineRequest) -> Any:
        if isinstance(request, TokenizeRequest):
            return list(request.prompts)
        if isinstance(request, GenerateRequest):
            return ["" for _ in request.token_ids]
        raise self._refuse(request)


def rag_plan() -> Graph:
    """The demo app's primitive graph (retrieve -> synthesize), with trivial framework callables."""
    g = Graph()
    g.add(Node("retrieve", ModuleKind.RETRIEVE, {"query": QueryInput("query_str")}, ("nodes",),
               RetrieveArgs(EMBEDDING, INDEX, 3, lambda hits, query: hits)))
    g.add(Node("synthesize", ModuleKind.SYNTHESIZE, {"query": QueryInput("query_str"), "nodes": Ref("retrieve", "nodes")},
               ("response",), SynthesizeArgs(LLM, Sampling(), lambda query, nodes: query,
                                             finish=lambda query, nodes, answer: answer)))
    g.set_output("response", Ref("synthesize", "response"))
    return lower(g)


def measure_overhead(queries: int = 500, concurrency: int = 16) -> dict[str, float]:
    """Per-query runtime cost in microseconds: sequential (median, p99) and under concurrency (mean)."""
    runtime = Runtime()
    try:
        runtime.engines.update({
            EMBEDDING.name: BatchingScheduler(EMBEDDING, EchoEngine(), EmbedRequest),
            INDEX.name: BatchingScheduler(INDEX, EchoEngine(), SearchRequest),
            LLM.name: EchoLLM(LLM),
        })
        scheduler = runtime.prepare(rag_plan())
        sequential = []
        for i in tqdm(range(queries), desc="runtime overhead", unit="query"):
            start = time.perf_counter()
            runtime.execute(scheduler, {"query_str": f"q{i}"})
            sequential.append(time.perf_counter() - start)

        async def burst() -> None:
            await asyncio.gather(*(runtime.aexecute(scheduler, {"query_str": f"q{i}"}) for i in range(concurrency)))

        bursts = max(1, queries // concurrency)
        start = time.perf_counter()
        for _ in range(bursts):
            asyncio.run(burst())
        concurrent = (time.perf_counter() - start) / (bursts * concurrency)
        sequential.sort()
        return {
            "primitives_per_query": len(scheduler.plan),
            "sequential_median_us": statistics.median(sequential) * 1e6,
            "sequential_p99_us": sequential[int(0.99 * (len(sequential) - 1))] * 1e6,
            f"concurrent{concurrency}_mean_us": concurrent * 1e6,
        }
    finally:
        runtime.close()
