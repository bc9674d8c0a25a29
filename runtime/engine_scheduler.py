"""Engine schedulers: one per engine, shared by every query in flight.

A scheduler takes typed requests (``teola.runtime.requests``), from the graph scheduler and from
the framework model classes alike; it never sees an IR node. The batching scheduler queues requests from all queries and sends whatever has gathered while the engine was
busy as one batch (no timers: a batch forms only from work that is already waiting), ordered by
priority; an engine with several replicas runs as many batches at once. When a batch fails, each
request is retried alone, so a bad request fails only its own query and the others go on.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import functools
import heapq
import inspect
import itertools
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping

from teola.optimizer.ops import EngineId
from teola.optimizer.values import Prompt, Sampling
from teola.runtime.engines.base import BatchEngine, EngineCapabilities
from teola.runtime.engines.llm import LLMEngine
from teola.runtime.errors import EngineDiedError
from teola.runtime.policy import vllm_priority
from teola.runtime.requests import (BatchRequest, CallRequest, EngineRequest, GenerateRequest, ParseRequest, Priority,
                                    TokenizeRequest, WarmPrefixRequest)
from teola.runtime.streams import read_items


class EngineScheduler(abc.ABC):
    """Runs typed requests on one engine, identified by ``id`` (its kind and name)."""

    def __init__(self, id: EngineId) -> None:
        self.id = id
        self.name = id.name

    @abc.abstractmethod
    async def execute(self, request: EngineRequest) -> Any:
        """Run ``request``; return its result."""

    def stream(self, request: EngineRequest) -> AsyncIterator[str]:
        """Run ``request`` and yield its result as text deltas (engines that stream override this)."""
        raise TypeError(f"the {self.name} engine does not stream; it cannot run a streaming {type(request).__name__}")

    @property
    def settings(self) -> Mapping[str, Any]:
        """What the engine started with."""
        return {}

    @property
    def capabilities(self) -> EngineCapabilities:
        """What the engine can do (passes consult it: no prefix reuse, no prefill splitting)."""
        return EngineCapabilities()

    def _refuse(self, request: EngineRequest) -> TypeError:
        return TypeError(f"the {self.name} engine ({self.id.kind.value}) does not run a {type(request).__name__}")

    def close(self) -> None:
        """Release the engine."""


class EngineBackedScheduler(EngineScheduler):
    """A scheduler in front of one engine object, whose settings and capabilities are the engine's."""

    def __init__(self, id: EngineId, engine: Any) -> None:
        super().__init__(id)
        self.engine = engine

    @property
    def settings(self) -> Mapping[str, Any]:
        return self.engine.settings

    @property
    def capabilities(self) -> EngineCapabilities:
        return self.engine.capabilities


@dataclass(order=True)
class _Request:
    priority: Priority
    seq: int
    payload: Any = field(compare=False)
    future: asyncio.Future = field(compare=False)


class BatchingScheduler(EngineBackedScheduler):
    """Cross-query batching in front of a ``BatchEngine`` (embedding, vector index, reranker).

    It takes requests of type ``accepts`` and queues their items (``BatchRequest.items()``), each
    on its own, so items of different requests share batches; a request is answered with its items'
    results in order. ``batches_sent`` and ``requests_sent`` count what reached the engine (their ratio is the mean
    batch size).
    """

    def __init__(self, id: EngineId, engine: BatchEngine, accepts: type[BatchRequest]) -> None:
        super().__init__(id, engine)
        self.accepts = accepts
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

    async def execute(self, request: EngineRequest) -> list[Any]:
        """One result per item of ``request``, in order."""
        if not isinstance(request, self.accepts):
            raise self._refuse(request)
        return list(await asyncio.gather(*(self.submit(item, request.priority) for item in request.items())))

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


class LLMScheduler(EngineBackedScheduler):
    """Tokenize, warm-prefix and generate requests on an LLM engine (vLLM, in process or on Ray),
    which batches concurrent requests itself.

    ``TokenizeRequest``: prompts to token IDs, on a worker thread of its own (chat templates and
    tokenizing are CPU work the event loop must not wait on). ``WarmPrefixRequest``: a prefix's
    tokens sent ahead (max_tokens=1) so their KV lands in the prefix cache before the full prompt
    arrives (once per distinct prefix lately: a shared one stays cached). ``GenerateRequest``: text
    from token IDs, whole or streamed; its items go to vLLM together, with the request's priority
    (vLLM's priority scheduler: lower runs first), named after its id.

    If the engine core dies, the scheduler restarts it once (however many requests saw it die) and
    repeats the whole-text requests, whose output nobody has seen yet; a stream that had started
    fails with ``EngineDiedError``.
    """

    def __init__(self, id: EngineId, engine: LLMEngine, remembered_prefixes: int = 4096) -> None:
        super().__init__(id, engine)
        self._warmed: OrderedDict[int, None] = OrderedDict()
        self._remembered = remembered_prefixes
        self._restarting = asyncio.Lock()
        self._tokenizer = ThreadPoolExecutor(max_workers=engine.tokenizer_threads, thread_name_prefix=f"tokenize-{id.name}")

    async def execute(self, request: EngineRequest) -> Any:
        if isinstance(request, TokenizeRequest):
            return await self._off_loop(lambda: [self.tokenize(prompt) for prompt in request.prompts])
        if isinstance(request, WarmPrefixRequest):
            return await self._warm(request)
        if isinstance(request, GenerateRequest):
            return list(await asyncio.gather(*(
                self._complete(tokens, request.sampling, vllm_priority(request.priority), _item_id(request, i))
                for i, tokens in enumerate(request.token_ids))))
        raise self._refuse(request)

    async def stream(self, request: EngineRequest) -> AsyncIterator[str]:
        if not isinstance(request, GenerateRequest) or len(request.token_ids) != 1:
            raise TypeError(f"the {self.name} engine streams a GenerateRequest of one prompt, not {request!r:.120}")
        async for delta in self._stream_deltas(request.token_ids[0], request.sampling, vllm_priority(request.priority),
                                               request.id):
            yield delta

    async def _off_loop(self, work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._tokenizer, work)

    async def _warm(self, request: WarmPrefixRequest) -> list[int]:
        token_ids = await self._off_loop(lambda: self.engine.tokenize_prefix(request.prefix))
        # a prefix too long for the context is not warmed: the full prompt fails as it would natively
        if token_ids and len(token_ids) < self.engine.max_model_len and self._first_warm(token_ids):
            await self._complete(token_ids, Sampling(max_tokens=1), vllm_priority(request.priority), request.id)
        return token_ids

    async def _complete(self, token_ids: list[int], sampling: Sampling, priority: int, request_id: str) -> str:
        """The engine's whole text for one request, repeated once on a restarted engine if the core died."""
        restarts = self.engine.restarts
        try:
            return await self.engine.complete(token_ids, sampling, priority, request_id)
        except EngineDiedError:
            await self._restart_after(restarts)
            return await self.engine.complete(token_ids, sampling, priority, request_id)

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

    async def _stream_deltas(self, token_ids: list[int], sampling: Sampling, priority: int,
                             request_id: str) -> AsyncIterator[str]:
        """Text deltas of one request. If the core dies before the first delta the request is repeated
        on a restarted engine; after it, the stream fails (its reader has seen part of the text)."""
        restarts, started = self.engine.restarts, False
        for attempt in range(2):
            deltas = self.engine.generate(token_ids, sampling, priority=priority, request_id=request_id)
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

    def close(self) -> None:
        self._tokenizer.shutdown(wait=False)
        self.engine.close()


def _item_id(request: GenerateRequest, i: int) -> str:
    """The vLLM request id of item ``i``: the request's own id when it holds one item."""
    return request.id if len(request.token_ids) == 1 else f"{request.id}/{i}"


class CallablePool(EngineScheduler):
    """Runs local work and opaque framework components on threads, so the event loop never blocks.

    A ``CallRequest``'s ``fn`` is called with its kwargs (a coroutine function is awaited on the
    loop; it hands any blocking work to threads itself; with ``per_item``, once per item of its
    list kwargs, the items side by side). A ``ParseRequest`` reads items out of its text, which may be a stream still
    being decoded.
    """

    def __init__(self, id: EngineId, max_workers: int = 16) -> None:
        super().__init__(id)
        self._threads = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="teola-call")

    async def execute(self, request: EngineRequest) -> Any:
        if isinstance(request, ParseRequest):
            return await read_items(request.parse, request.text, request.items)
        if not isinstance(request, CallRequest):
            raise self._refuse(request)
        fn, kwargs = request.fn, request.kwargs
        if inspect.iscoroutinefunction(fn):  # async work (a framework's own async call) runs on the loop
            return await fn(**kwargs)
        if request.per_item:  # every input is a list: one call per item, each on its own thread
            calls = [dict(zip(kwargs, values)) for values in zip(*kwargs.values(), strict=True)]
            return list(await asyncio.gather(*(self._on_thread(functools.partial(fn, **a)) for a in calls)))
        return await self._on_thread(lambda: fn(**kwargs))

    async def _on_thread(self, call: Callable[[], Any]) -> Any:
        """``call()`` on a pool thread, in this task's context (so what it calls knows which query it serves)."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, contextvars.copy_context().run, call)

    def close(self) -> None:
        self._threads.shutdown(wait=False)
