"""The process-wide runtime: one event loop thread that owns every shared engine.

Engines are started once per process and shared by every query and every optimized app, native
framework classes backed by them included. Sync callers block on ``run``; async callers await
``arun`` from any event loop; the work itself always runs on the runtime's own loop. Streams work
the same way: ``iterate`` and ``aiterate`` read an async stream pumped on the runtime's loop, and a
reader that stops early (breaks out, closes the iterator, is cancelled) stops the stream there too,
so the engine request or the query's decode behind it is aborted, not left to run to ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import weakref
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, TypeVar

from teola.optimizer.cost_model import LinearCost
from teola.optimizer.ir import Graph
from teola.optimizer.ops import CALLABLE, EngineKind
from teola.runtime.admission import AdmissionGate, QueryLimits, inside_query
from teola.runtime.backends.base import Backend
from teola.runtime.backends.in_process import InProcessBackend
from teola.runtime.engine_scheduler import BatchingScheduler, CallablePool, EngineScheduler, LLMScheduler
from teola.runtime.errors import TeolaRuntimeError
from teola.runtime.graph_scheduler import GraphScheduler, QueryTrace
from teola.runtime.loop_bridge import aiterate_on, iterate_on
from teola.runtime.policy import CriticalPathFirst, SchedulingPolicy
from teola.runtime.models import DEFAULT_EMBEDDING, DEFAULT_LLM
from teola.runtime.profiler import profile_engine
from teola.runtime.query_priority import query_priority
from teola.runtime.registry import ENGINE_KINDS, EngineSpec
from teola.runtime.traces import deliver

log = logging.getLogger(__name__)
T = TypeVar("T")
_FOREVER = object()  # the holder of an engine asked for without one


class Runtime:
    """Shared engines and the event loop they run on. Queries are admitted under ``limits``
    (``QueryLimits``: how many run, how many wait, how long one may take); engines run where
    ``backend`` puts them (in this process by default, or ``RayBackend``'s actors) and serve the
    primitives of every query in flight in the order ``policy`` gives them."""

    def __init__(self, limits: QueryLimits = QueryLimits(), backend: Backend | None = None,
                 policy: SchedulingPolicy = CriticalPathFirst()) -> None:
        self.backend = backend or InProcessBackend()
        self.policy = policy
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="teola-runtime", daemon=True)
        self._thread.start()
        self._lock = threading.RLock()  # a released engine's finalizer may run inside engine()
        self.engines: dict[str, EngineScheduler] = {CALLABLE.name: CallablePool(CALLABLE)}
        self._profiles: dict[str, LinearCost | None] = {}
        self._holders: dict[str, set[object]] = {}
        self.gate = AdmissionGate(limits)

    def set_limits(self, limits: QueryLimits) -> None:
        """Admit queries from now on under ``limits`` (queries already admitted finish under the old ones)."""
        self.gate = AdmissionGate(limits)

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the runtime loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the runtime loop and wait for it (from a thread that is not the loop's).
        A caller that gives up (KeyboardInterrupt, a thread's timeout) cancels it."""
        if threading.current_thread() is self._thread:
            raise TeolaRuntimeError("Runtime.run() was called on the runtime's own loop; await the coroutine instead")
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def arun(self, coro: Awaitable[T]) -> T:
        """Await ``coro`` run on the runtime loop, from any other event loop."""
        if asyncio.get_running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        """Yield the items of ``stream`` (pumped on the runtime loop) in the calling thread; the
        stream's error, if any, is raised here."""
        return iterate_on(self._loop, stream)

    def aiterate(self, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        """Yield the items of ``stream`` (pumped on the runtime loop) on the caller's own event loop."""
        return aiterate_on(self._loop, stream)

    def engine(self, spec: EngineSpec, holder: object | None = None) -> EngineScheduler:
        """The shared engine ``spec`` asks for, started on first use (vLLM takes 10-50 s on CPU). One
        engine serves every app that asks for its id; asking with other settings is refused. With a
        ``holder`` (an app), the engine is released once no holder of it is left; without, it runs
        until the runtime closes."""
        name = spec.id.name
        with self._lock:
            if name not in self.engines:
                log.info("starting engine %s", name)
                self.backend.open()
                self.engines[name] = self.run(self._start(spec))
                # Exit hooks run last-registered first: re-registering after each start closes the
                # engines before multiprocessing's own hook waits for vLLM's engine-core process.
                atexit.unregister(self.close)
                atexit.register(self.close)
            scheduler = self.engines[name]
            started_with = scheduler.settings
            if any(started_with.get(k) != v for k, v in spec.settings.items()):
                raise TeolaRuntimeError(f"the shared engine {name} already runs with {started_with}, not {dict(spec.settings)}: "
                                        "ask for the same settings (one engine per model serves every app)")
            self._holders.setdefault(name, set())
            if holder is None:
                self._holders[name].add(_FOREVER)
            else:
                key = object()
                self._holders[name].add(key)
                weakref.finalize(holder, self._release, name, key).atexit = False
            return scheduler

    async def _start(self, spec: EngineSpec) -> EngineScheduler:
        return ENGINE_KINDS[spec.kind].scheduler(spec.id, await self.backend.start(spec))

    def _release(self, name: str, key: object) -> None:
        """Drop one holder of engine ``name``; close the engine when none is left.

        It runs as a finalizer, in whatever thread the garbage collector runs in: possibly one an
        engine start works in while another thread holds the lock waiting for that start. So when
        the lock is taken it releases from a thread of its own, which waits for the lock."""
        if not self._lock.acquire(blocking=False):
            threading.Thread(target=self._release_locked, args=(name, key, True), name="teola-release",
                             daemon=True).start()
            return
        self._release_locked(name, key, False)

    def _release_locked(self, name: str, key: object, acquire: bool) -> None:
        if acquire:
            self._lock.acquire()
        try:
            holders = self._holders.get(name)
            if holders is None or key not in holders:
                return
            holders.discard(key)
            if holders or name not in self.engines or not self._thread.is_alive():
                return
            del self._holders[name]
            engine = self.engines.pop(name)
            self._profiles.pop(name, None)
        finally:
            self._lock.release()
        log.info("releasing engine %s: no app holds it", name)
        self.submit(_call_on_loop(engine.close))

    def llm(self, model: str = DEFAULT_LLM, **engine_args: Any) -> LLMScheduler:
        """The shared LLM engine for ``model``, started with ``engine_args`` (see ``VLLMEngine``)."""
        return self.engine(EngineSpec(EngineKind.LLM, model, engine_args))

    def embedding(self, model: str = DEFAULT_EMBEDDING) -> BatchingScheduler:
        """The shared embedding engine for ``model``."""
        return self.engine(EngineSpec(EngineKind.EMBEDDING, model))

    def cost_profile(self, names: Iterable[str]) -> dict[str, LinearCost]:
        """Fitted batch costs of the batching engines among ``names``, each profiled once per process."""
        for name in names:
            engine = self.engines.get(name)
            if name not in self._profiles and isinstance(engine, BatchingScheduler):
                self._profiles[name] = self.run(profile_engine(engine.engine))
                log.info("profiled engine %s: %s", name, self._profiles[name])
        return {name: cost for name in names if (cost := self._profiles.get(name)) is not None}

    def prepare(self, plan: Graph) -> GraphScheduler:
        """A scheduler for ``plan`` on this runtime's engines: analysed once, then run for every query."""
        return GraphScheduler(plan, self.engines, self.policy)

    async def _admitted(self, scheduler: GraphScheduler, inputs: Mapping[str, Any], priority: int,
                        nested: bool) -> tuple[dict[str, Any], QueryTrace]:
        trace = QueryTrace()
        return await self.gate.run(lambda: scheduler.run(inputs, priority, trace), trace.unfinished, nested)

    def execute(self, scheduler: GraphScheduler, inputs: Mapping[str, Any], priority: int | None = None) -> dict[str, Any]:
        """Run one query of a prepared plan, once admitted (at once, inside another query), and wait
        for its outputs; its trace goes to the caller's ``record_traces()``, if one is open.
        ``priority`` is the query's (lower first; by default the caller's ``query_priority()``)."""
        priority = query_priority() if priority is None else priority
        outputs, trace = self.run(self._admitted(scheduler, inputs, priority, inside_query()))
        deliver(trace)
        return outputs

    async def aexecute(self, scheduler: GraphScheduler, inputs: Mapping[str, Any],
                       priority: int | None = None) -> dict[str, Any]:
        """Run one query of a prepared plan from any event loop, once admitted (at once, inside
        another query); cancelling the awaiting task cancels the query. Its trace goes to the
        caller's ``record_traces()``, if one is open. ``priority`` as for ``execute``."""
        priority = query_priority() if priority is None else priority
        outputs, trace = await self.arun(self._admitted(scheduler, inputs, priority, inside_query()))
        deliver(trace)
        return outputs

    def close(self) -> None:
        """Stop every engine, the backend and the loop (a second call does nothing more)."""
        with self._lock:
            for engine in self.engines.values():
                try:
                    self.run(_call_on_loop(engine.close))
                except Exception:  # closing must go on for the other engines
                    log.exception("closing engine %s failed", engine.name)
            self.engines.clear()
            self._holders.clear()
            self.backend.close()
        self._loop.call_soon_threadsafe(self._loop.stop)


async def _call_on_loop(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the loop thread (engines are closed where they run)."""
    return fn()


_default: Runtime | None = None
_default_lock = threading.Lock()


def shutdown_runtime() -> None:
    """Close the shared runtime if one was started (it is also closed at exit)."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
            _default = None


def configure_runtime(limits: QueryLimits = QueryLimits(), backend: Backend | None = None) -> Runtime:
    """Make the process's shared runtime admit queries under ``limits`` and run its engines on
    ``backend`` (None: in this process). Call it before building the apps: a shared runtime already
    started is closed first, and engines handed out by it stop."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
        _default = Runtime(limits, backend)
        atexit.register(_default.close)
        return _default


def get_runtime() -> Runtime:
    """The process's shared runtime, created on first use and closed at exit (``set_limits`` tunes its admission)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Runtime()
            atexit.register(_default.close)
        return _default
