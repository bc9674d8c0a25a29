"""Engine schedulers: one per engine, shared by every query in flight.

A scheduler turns a primitive (a graph node and its input values) into engine work. The batching
scheduler queues requests from all queries and sends whatever has gathered while the engine was
busy as one batch (no timers: a batch forms only from work that is already waiting), ordered by
priority. When a batch fails, each request is retried alone, so a bad request fails only its
own query and the others go on.
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from teola.optimizer.ir import Node, Op
from teola.optimizer.values import Prompt, Sampling
from teola.runtime.engines.base import BatchEngine
from teola.runtime.engines.llm import VLLMEngine

# (query priority, -depth): lower sorts first. Depth is the primitive's distance from the query's
# outputs, so work with the most still to follow it is served first.
Priority = tuple[int, int]


class EngineScheduler(abc.ABC):
    """Runs primitives on one engine."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    async def execute(self, node: Node, args: dict[str, Any], priority: Priority = (0, 0)) -> Any:
        """Run ``node`` with its input values ``args``; return its output value."""

    def close(self) -> None:
        """Release the engine."""


@dataclass(order=True)
class _Request:
    priority: Priority
    seq: int
    payload: Any = field(compare=False)
    future: asyncio.Future = field(compare=False)


class BatchingScheduler(EngineScheduler):
    """Cross-query batching in front of a ``BatchEngine`` (embedding, vector index, reranker).

    ``payload_of`` maps a node and its input values to the engine's request. ``batches_sent`` and
    ``requests_sent`` count what reached the engine (their ratio is the mean batch size).
    """

    def __init__(self, name: str, engine: BatchEngine, payload_of: Callable[[Node, dict[str, Any]], Any]) -> None:
        super().__init__(name)
        self.engine = engine
        self._payload_of = payload_of
        self._heap: list[_Request] = []
        self._seq = itertools.count()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self.batches_sent = 0
        self.requests_sent = 0

    async def submit(self, payload: Any, priority: Priority = (0, 0)) -> Any:
        """Queue one request; lower ``priority`` values are served first."""
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"engine:{self.name}")
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, _Request(priority, next(self._seq), payload, future))
        self._wakeup.set()
        return await future

    async def execute(self, node: Node, args: dict[str, Any], priority: Priority = (0, 0)) -> Any:
        return await self.submit(self._payload_of(node, args), priority)

    def _take_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        while self._heap and len(batch) < self.engine.capabilities.max_batch:
            request = heapq.heappop(self._heap)
            if not request.future.cancelled():
                batch.append(request)
        return batch

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while batch := self._take_batch():
                self.batches_sent += 1
                self.requests_sent += len(batch)
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Request]) -> None:
        try:
            results = await self.engine.run_batch([r.payload for r in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exception=exc)
                return
            for request in batch:  # isolate the request that broke the batch
                await self._run_batch([request])
            return
        for request, result in zip(batch, results):
            _settle(request.future, result=result)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self.engine.close()


def _settle(future: asyncio.Future, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def embed_payload(node: Node, args: dict[str, Any]) -> str:
    """An embed primitive's request: its text."""
    return args["text"]


def search_payload(node: Node, args: dict[str, Any]) -> tuple[list[float], int]:
    """A search primitive's request: (query vector, top_k)."""
    return args["vector"], int(node.params["top_k"])


class LLMScheduler(EngineScheduler):
    """Prefill and decode primitives on a vLLM engine, which batches concurrent requests itself.

    ``prefill`` turns a prompt into token IDs (and, with ``params['warm']``, sends it ahead so
    its KV lands in the prefix cache); ``decode`` generates from token IDs. vLLM runs here with
    its default first-come-first-served policy, so primitive priorities are not passed on yet.
    """

    def __init__(self, name: str, engine: VLLMEngine) -> None:
        super().__init__(name)
        self.engine = engine

    async def execute(self, node: Node, args: dict[str, Any], priority: Priority = (0, 0)) -> Any:
        if node.op is Op.PREFILL:
            token_ids = self.tokenize(args["prompt"])
            if node.params.get("warm"):
                await self.engine.complete(token_ids, Sampling(max_tokens=1))
            return token_ids
        if node.op is Op.DECODE:
            return await self.engine.complete(args["tokens"], node.params["sampling"])
        raise ValueError(f"the LLM engine runs prefill and decode primitives, not {node.op.value!r} ({node.name})")

    def tokenize(self, prompt: Prompt) -> list[int]:
        """Token IDs of a prompt, as the engine will see them."""
        if not isinstance(prompt, Prompt):
            raise TypeError(f"prefill takes a teola Prompt, got {type(prompt).__name__}")
        return self.engine.tokenize(prompt)

    async def generate_text(self, prompt: Prompt, sampling: Sampling) -> str:
        """Prompt in, whole text out: what framework LLM classes backed by this engine call."""
        return await self.engine.complete(self.tokenize(prompt), sampling)

    async def stream_text(self, prompt: Prompt, sampling: Sampling) -> AsyncIterator[str]:
        """Prompt in, text deltas out as the engine produces them."""
        async for delta, _ in self.engine.generate(self.tokenize(prompt), sampling):
            yield delta

    def close(self) -> None:
        self.engine.close()


class CallablePool(EngineScheduler):
    """Runs local work and opaque framework components on threads, so the event loop never blocks.

    The node's ``params['fn']`` is called with the node's input values as keyword arguments.
    """

    def __init__(self, name: str = "callable", max_workers: int = 16) -> None:
        super().__init__(name)
        self._threads = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="teola-call")

    async def execute(self, node: Node, args: dict[str, Any], priority: Priority = (0, 0)) -> Any:
        fn = node.params["fn"]
        return await asyncio.get_running_loop().run_in_executor(self._threads, lambda: fn(**args))

    def close(self) -> None:
        self._threads.shutdown(wait=False)
