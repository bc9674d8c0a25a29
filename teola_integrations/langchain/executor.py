"""The executor switch: every RunnableSequence and RunnableParallel in the process runs through Teola.

While it is on, ``invoke``/``ainvoke`` of every ``RunnableSequence`` and ``RunnableParallel`` go to
Teola's graph scheduler:

- a chain with parts on Teola's engines (a ``TeolaChatModel``/``TeolaLLM`` or a langchain-openai
  client after a prompt, a retriever over a ``TeolaVectorStore`` or an ``InMemoryVectorStore``) runs
  as its optimized plan, built once per chain object (if an engine it needs cannot start, e.g. its
  model's server is down, it runs level by level that time, with one log line, and fails as natively);
- any other chain runs level by level, each child a call with the very child config LangChain gives
  it, so callbacks, run trees, tags and errors are LangChain's own.

A sequence's ``batch``/``abatch`` runs each input through the optimized plan when the chain has
engine parts (the engines batch across the inputs in flight); otherwise it keeps LangChain's
step-by-step batching (each step's own ``batch``), whose steps' invocations then come through Teola.
Streaming (``stream``/``astream``/``astream_events``/``transform``) keeps LangChain's own path: it
passes chunks step to step, which is already a pipeline. So does an ``invoke``/``ainvoke`` of a
chain with engine parts that a token-streaming handler watches (LangGraph's ``messages`` stream
mode, ``astream_events``, ``astream_log``): LangChain then streams its models' tokens to that
handler, which Teola's plan of the chain, made for a whole answer, would not. Switching is
process-wide (it patches the two classes' methods); ``teola_executor()`` scopes it to a ``with`` block.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator

from langchain_core.runnables import Runnable, RunnableParallel, RunnableSequence

from teola.adapters.langchain import level_graph, read_runnable
from teola.optimizer.lowering import lower
from teola.runtime.errors import EngineUnavailableError
from teola.runtime.runtime import get_runtime
from teola_integrations.langchain.execution import ChainPlan, streams_tokens_to_a_handler
from teola_integrations.langchain.runnable import build_plan

log = logging.getLogger(__name__)
_native: dict[tuple[type, str], Any] = {}
_lock = threading.Lock()
_optimized: dict[int, tuple[weakref.ref, ChainPlan | None]] = {}
# How many invocations the switch routed: as an optimized plan, level by level, or back to LangChain
# (a sync invoke on a thread whose loop is running; a chain with engine parts watched by a
# token-streaming handler). Shown by the pytest plugin.
ROUTED: Counter[str] = Counter()


def _plan_for(runnable: RunnableSequence | RunnableParallel) -> ChainPlan:
    """The optimized plan of a chain with engine parts (built once per chain object), else the
    chain's own level, rebuilt per call (a parallel's steps may be changed between calls)."""
    key = id(runnable)
    cached = _optimized.get(key)
    if cached is None or cached[0]() is not runnable:
        plan = None
        if _has_engine_parts(runnable):
            runtime = get_runtime()
            try:
                plan = ChainPlan(build_plan(runnable, runtime).plan, runtime)
            except EngineUnavailableError as exc:  # e.g. its model's server is down: the chain fails as it would natively
                log.warning("teola: %s runs level by level, as LangChain runs it: %s", runnable.get_name(), exc)
                return ChainPlan(lower(level_graph(runnable)), None)  # not remembered: tried again on the next call
        _optimized[key] = (weakref.ref(runnable, lambda _: _optimized.pop(key, None)), plan)
        cached = _optimized[key]
    return cached[1] or ChainPlan(lower(level_graph(runnable)), None)


def _has_engine_parts(runnable: Runnable) -> bool:
    """Whether Teola lowers part of ``runnable`` onto its engines (remembered per chain object)."""
    key = id(runnable)
    cached = _optimized.get(key)
    if cached is not None and cached[0]() is runnable:
        return cached[1] is not None
    try:
        return bool(read_runnable(runnable).lowered)
    except Exception:  # a structure the tracer cannot follow runs level by level, as LangChain would
        log.debug("teola: could not trace %s; it runs level by level", runnable.get_name(), exc_info=True)
        return False


def _native_method(runnable: Runnable, method: str) -> Any:
    return _native[(RunnableSequence if isinstance(runnable, RunnableSequence) else RunnableParallel, method)]


def _invoke(self: Runnable, input: Any, config: Any = None, **kwargs: Any) -> Any:
    plan = _plan_for(self)
    if plan.runtime is None and _inside_running_loop():
        # A synchronous invoke made on a thread whose event loop is running blocks that loop whatever
        # runs it; LangChain's own path at least does the work there instead of waiting on a lock.
        ROUTED["native_in_running_loop"] += 1
        return _native_method(self, "invoke")(self, input, config, **kwargs)
    if plan.runtime is not None and streams_tokens_to_a_handler(config):
        ROUTED["native_streaming_handler"] += 1
        return _native_method(self, "invoke")(self, input, config, **kwargs)
    ROUTED["optimized" if plan.runtime is not None else "level"] += 1
    return plan.invoke(self.get_name(), input, config, kwargs)


def _inside_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _ainvoke(self: Runnable, input: Any, config: Any = None, **kwargs: Any) -> Any:
    plan = _plan_for(self)
    if plan.runtime is not None and streams_tokens_to_a_handler(config):
        ROUTED["native_streaming_handler"] += 1
        return await _native_method(self, "ainvoke")(self, input, config, **kwargs)
    ROUTED["optimized" if plan.runtime is not None else "level"] += 1
    return await plan.ainvoke(self.get_name(), input, config, kwargs)


def _batch(self: RunnableSequence, inputs: list, config: Any = None, **kwargs: Any) -> list:
    if _has_engine_parts(self):  # each input through the optimized plan; the engines batch across them
        return Runnable.batch(self, inputs, config, **kwargs)
    return _native[(RunnableSequence, "batch")](self, inputs, config, **kwargs)


async def _abatch(self: RunnableSequence, inputs: list, config: Any = None, **kwargs: Any) -> list:
    if _has_engine_parts(self):
        return await Runnable.abatch(self, inputs, config, **kwargs)
    return await _native[(RunnableSequence, "abatch")](self, inputs, config, **kwargs)


_ROUTES = {
    (RunnableSequence, "invoke"): _invoke,
    (RunnableSequence, "ainvoke"): _ainvoke,
    (RunnableSequence, "batch"): _batch,
    (RunnableSequence, "abatch"): _abatch,
    (RunnableParallel, "invoke"): _invoke,
    (RunnableParallel, "ainvoke"): _ainvoke,
}


def is_teola_executor_enabled() -> bool:
    """Whether LangChain's composites currently run through Teola."""
    return bool(_native)


def enable_teola_executor() -> None:
    """Route every RunnableSequence and RunnableParallel in this process through Teola."""
    with _lock:
        for (cls, method), route in _ROUTES.items():
            if (cls, method) not in _native:
                _native[(cls, method)] = cls.__dict__[method]
                setattr(cls, method, route)


def disable_teola_executor() -> None:
    """Give LangChain its own executor back."""
    with _lock:
        for (cls, method), original in _native.items():
            setattr(cls, method, original)
        _native.clear()


@contextmanager
def teola_executor() -> Iterator[None]:
    """Run the ``with`` block's LangChain chains through Teola, then restore what was there before."""
    was_enabled = is_teola_executor_enabled()
    enable_teola_executor()
    try:
        yield
    finally:
        if not was_enabled:
            disable_teola_executor()
