"""Engine schedulers: one per engine, shared by every query in flight.

A scheduler turns a primitive (a graph node and its input values) into engine work. The batching
scheduler queues requests from all queries and sends whatever has gathered while the engine was
busy as one batch (no timers: a batch forms only from work that is already waiting), ordered by
priority; an engine with several replicas runs as many batches at once. When a batch fails, each
request is retried alone, so a bad request fails only its own query and the others go on.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import heapq
import inspect
import itertools
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from teola.optimizer.ir import Node, Op
from teola.optimizer.values import Prompt, Sampling
from teola.runtime.engines.base import BatchEngine
from teola.runtime.engines.llm import LLMEngine
from teola.runtime.errors import EngineDiedError
from teola.runtime.streams import read_items

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

    def stream(self, node: Node, args: dict[str, Any], priority: Priority = (0, 0)) -> AsyncIterator[str]:
        """Run ``node`` and yield its output as text deltas (engines that stream override this)."""
        raise TypeError(f"the {self.name} engine does not stream; {node.name} cannot be a streaming primitive")

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

    ``payload_of`` maps a node and its input values to the engine's requests: one, or one per item
    when the node has ``params['batch']`` (its input is a list; its output the list of results).
    ``batches_sent`` and ``requests_sent`` count what reached the engine (their ratio is the mean
    batch size).
    """

    def __init__(self, name: str, engine: BatchEngine, payload_of: Callable[[Node, dict[str, Any]], list]) -> None:
        super().__init__(name)
        self.engine = engine
        self._payload_of = payload_of
        self._heap: list[_Request] = []
        self._seq = itertools.count()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
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
        results = await asyncio.gather(*(self.submit(p, priority) for p in self._payload_of(node, args)))
        return list(results) if node.params.get("batch") else results[0]

    def _take_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        while self._heap and len(batch) < self.engine.capabilities.max_batch:
            request = heapq.heappop(self._heap)
            if not request.future.cancelled():
                batch.append(request)
        return batch

    async def _run(self) -> None:
        # A batch is taken once a slot is free, so while every slot is busy the next one gathers.
        slots = asyncio.Semaphore(self.engine.capabilities.concurrent_batches)
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while True:
                await slots.acquire()
                batch = self._take_batch()
                if not batch:
                    slots.release()
                    break
                self.batches_sent += 1
                self.requests_sent += len(batch)
                running = asyncio.get_running_loop().create_task(self._run_batch(batch))
                self._running.add(running)
                running.add_done_callback(lambda task: (self._running.discard(task), slots.release()))

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
        for task in [self._worker, *self._running]:
            if task is not None:
                task.cancel()
        self.engine.close()


def _settle(future: asyncio.Future, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _items(node: Node, value: Any) -> list:
    return list(value) if node.params.get("batch") else [value]


def embed_payload(node: Node, args: dict[str, Any]) -> list[str]:
    """An embed primitive's requests: its text, or each of its texts."""
    return _items(node, args["text"])


def search_payload(node: Node, args: dict[str, Any]) -> list[tuple[list[float], int]]:
    """A search primitive's requests: (query vector, top_k) for its vector or each of its vectors."""
    return [(vector, int(node.params["top_k"])) for vector in _items(node, args["vector"])]


class LLMScheduler(EngineScheduler):
    """Prefill and decode primitives on an LLM engine (vLLM, in process or on Ray), which batches
    concurrent requests itself.

    ``prefill`` turns a prompt into token IDs; given a ``PromptPrefix`` with ``params['warm']`` it
    sends the prefix's tokens ahead (max_tokens=1) so their KV lands in the prefix cache before the
    full prompt arrives (once per distinct prefix lately: a shared one stays cached). ``decode`` generates from token IDs, whole or streamed. With
    ``params['batch']`` both work on lists (independent prompts sent together). Each request
    reaches vLLM with its primitive's priority (vLLM's priority scheduler: lower runs first).

    If the engine core dies, the scheduler restarts it once (however many requests saw it die) and
    repeats the whole-text requests, whose output nobody has seen yet; a stream that had started
    fails with ``EngineDiedError``.
    """

    def __init__(self, name: str, engine: LLMEngine, remembered_prefixes: int = 4096) -> None:
        super().__init__(name)
        self.engine = engine
        self._warmed: OrderedDict[int, None] = OrderedDict()
        self._remembered = remembered_prefixes
        self._restarting = asyncio.Lock()

    async def _complete(self, token_ids: list[int], sampling: Sampling, priority: int = 0) -> str:
        """The engine's whole text for one request, repeated once on a restarted engine if the core died."""
        restarts = self.engine.restarts
        try:
            return await self.engine.complete(token_ids, sampling, priority)
        except EngineDiedError:
            await self._restart_after(restarts)
            return await self.engine.complete(token_ids, sampling, priority)

    async def _restart_after(self, restarts: int) -> None:
        """Restart the engine, unless another request already did since ``restarts`` was read."""
        async with self._restarting:
            if self.engine.restarts == restarts:
                await self.engine.restart()
                self._warmed.clear()  # the new core's prefix cache is empty

    def _first_warm(self, token_ids: list[int]) -> bool:
        """Whether this prefix was not warmed lately. A prefix every query shares (a system prompt)
        stays in the prefix cache, and warming it again would only make the full prompt wait; if
        vLLM did evict it, the full prompt computes it, as it would without warming."""
        key = hash(tuple(token_ids))
        if key in self._warmed:
            self._warmed.move_to_end(key)
            return False
        self._warmed[key] = None
        if len(self._warmed) > self._remembered:
            self._warmed.popitem(last=False)
        return True

    async def execute(self, node: Node, args: dict[str, Any], priority: Priority = (0, 0)) -> Any:
        if node.op is Op.PREFILL and node.params.get("warm"):
            token_ids = self.engine.tokenize_prefix(args["prompt"])
            # a prefix too long for the context is not warmed: the full prompt fails as it would natively
            if token_ids and len(token_ids) < self.engine.max_model_len and self._first_warm(token_ids):
                await self._complete(token_ids, Sampling(max_tokens=1), vllm_priority(priority))
            return token_ids
        if node.op is Op.PREFILL and node.params.get("batch"):
            return [self.tokenize(prompt) for prompt in args["prompt"]]
        if node.op is Op.PREFILL:
            return self.tokenize(args["prompt"])
        if node.op is Op.DECODE and node.params.get("batch"):
            return list(await asyncio.gather(*(self._complete(tokens, node.params["sampling"], vllm_priority(priority))
                                               for tokens in args["tokens"])))
        if node.op is Op.DECODE:
            return await self._complete(args["tokens"], node.params["sampling"], vllm_priority(priority))
        raise ValueError(f"the LLM engine runs prefill and decode primitives, not {node.op.value!r} ({node.name})")

    async def stream(self, node: Node, args: dict[str, Any], priority: Priority = (0, 0)) -> AsyncIterator[str]:
        if node.op is not Op.DECODE:
            raise ValueError(f"only decode primitives stream, not {node.op.value!r} ({node.name})")
        async for delta in self._stream_deltas(args["tokens"], node.params["sampling"], vllm_priority(priority)):
            yield delta

    async def _stream_deltas(self, token_ids: list[int], sampling: Sampling, priority: int = 0) -> AsyncIterator[str]:
        """Text deltas of one request. If the core dies before the first delta the request is repeated
        on a restarted engine; after it, the stream fails (its reader has seen part of the text)."""
        restarts, started = self.engine.restarts, False
        for attempt in range(2):
            deltas = self.engine.generate(token_ids, sampling, priority=priority)
            try:
                async for delta, _ in deltas:
                    started = True
                    yield delta
                return
            except EngineDiedError:
                await self._restart_after(restarts)
                if started or attempt:
                    raise
            finally:
                await deltas.aclose()

    def tokenize(self, prompt: Prompt) -> list[int]:
        """Token IDs of a prompt, as the engine will see them."""
        if not isinstance(prompt, Prompt):
            raise TypeError(f"prefill takes a teola Prompt, got {type(prompt).__name__}")
        return self.engine.tokenize(prompt)

    async def generate_text(self, prompt: Prompt, sampling: Sampling) -> str:
        """Prompt in, whole text out: what framework LLM classes backed by this engine call."""
        return await self._complete(self.tokenize(prompt), sampling)

    async def stream_text(self, prompt: Prompt, sampling: Sampling) -> AsyncIterator[str]:
        """Prompt in, text deltas out as the engine produces them."""
        async for delta in self._stream_deltas(self.tokenize(prompt), sampling):
            yield delta

    def close(self) -> None:
        self.engine.close()


def vllm_priority(priority: Priority) -> int:
    """A primitive's (query priority, -depth) as one vLLM priority: query first, then depth."""
    query, depth = priority
    return query * 10_000 + depth


class CallablePool(EngineScheduler):
    """Runs local work and opaque framework components on threads, so the event loop never blocks.

    The node's ``params['fn']`` is called with the node's input values as keyword arguments (a
    coroutine function is awaited on the loop; it hands any blocking work to threads itself; with
    ``params['batch']``, once per item of its list inputs). A
    ``parse`` primitive reads items (``params['items']``, a (start, stop) slice, or all) out of its
    ``text`` input, which may be a stream still being decoded.
    """

    def __init__(self, name: str = "callable", max_workers: int = 16) -> None:
        super().__init__(name)
        self._threads = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="teola-call")

    async def execute(self, node: Node, args: dict[str, Any], priority: Priority = (0, 0)) -> Any:
        fn = node.params["fn"]
        if inspect.iscoroutinefunction(fn):  # async work (a framework's own async call) runs on the loop
            return await fn(**args)
        if node.op is Op.PARSE:
            return await read_items(fn, args["text"], node.params.get("items"))
        if node.params.get("batch"):  # every input is a list: one call per item
            calls = [dict(zip(args, values)) for values in zip(*args.values(), strict=True)]
            return await self._on_thread(lambda: [fn(**a) for a in calls])
        return await self._on_thread(lambda: fn(**args))

    async def _on_thread(self, call: Callable[[], Any]) -> Any:
        """``call()`` on a pool thread, in this task's context (so what it calls knows which query it serves)."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, contextvars.copy_context().run, call)

    def close(self) -> None:
        self._threads.shutdown(wait=False)
