"""LangGraph's private internals that Teola touches: all of them, and only here (langgraph 1.2).

Teola keeps LangGraph's own Pregel loop: it prepares every step's tasks, applies their writes in
LangGraph's order, checkpoints, interrupts and streams. What Teola adds is *when* a task's work runs:
it may run a node of step N+1 while step N's slow siblings still run. That needs, from LangGraph:

- four hooks on the loop and runner (``install``): after a step's tasks are prepared (``tick``),
  around the application of a step's writes (``after_tick``), after a task's writes are committed
  (``put_writes``), and where the runner runs a task (``run_with_retry``/``arun_with_retry``);
- the loop's state (channels, checkpoint, step, stop) and its own functions to apply writes to a copy
  of it and prepare the tasks that copy triggers (``apply_writes``, ``prepare_next_tasks``);
- a task's config keys: how it sends writes, reads the state (conditional edges), writes to the
  custom stream (its ``Runtime``), and its callbacks.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator, Mapping, Sequence

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph._internal import _constants as C
from langgraph._internal._runnable import RunnableCallable, _is_stream_handler
from langgraph.channels.last_value import LastValueAfterFinish
from langgraph.channels.named_barrier_value import NamedBarrierValueAfterFinish
from langgraph.checkpoint.base import copy_checkpoint
from langgraph.constants import START
from langgraph.pregel import _algo, _loop, _runner
from langgraph.pregel._messages import StreamMessagesHandler
from langgraph.pregel._tools import StreamToolCallHandler

from teola.adapters.langchain.compat import STREAMING_HANDLERS
from langgraph.types import PregelExecutableTask

TESTED = "1.2"
# The private names Teola's hooks and early starts use, by the module or class that has them.
PRIVATE_NAMES: dict[Any, tuple[str, ...]] = {
    _loop.PregelLoop: ("tick", "after_tick", "put_writes"),
    _runner: ("run_with_retry", "arun_with_retry"),
    _algo: ("apply_writes", "prepare_next_tasks", "PregelTaskWrites"),
    C: ("CONF", "CONFIG_KEY_READ", "CONFIG_KEY_RUNTIME", "PULL", "ERROR", "INTERRUPT"),
}


def missing_internals() -> list[str]:
    """Every private name Teola uses that the installed langgraph lacks (empty: the hooks fit)."""
    return [
        f"{getattr(owner, '__name__', owner)}.{name}"
        for owner, names in PRIVATE_NAMES.items()
        for name in names
        if not hasattr(owner, name)
    ]


def version() -> str:
    """The installed langgraph's version."""
    return importlib.metadata.version("langgraph")


# Writes that mean the task failed or interrupted: the step will not go on as planned.
STOP_CHANNELS = frozenset({C.ERROR, C.INTERRUPT})
_DEFERRED_TRIGGERS = (LastValueAfterFinish, NamedBarrierValueAfterFinish)


# --- the graph -----------------------------------------------------------------------------------
def node_functions(bound: Runnable) -> list[Callable[..., Any]]:
    """The user's function(s) behind a node added as a function (sync and async), else none."""
    if isinstance(bound, RunnableCallable):
        return [f for f in (bound.func, bound.afunc) if f is not None]
    return []


def holds_subgraph(node: Any) -> bool:
    """Whether a ``PregelNode`` runs a subgraph."""
    return bool(node.subgraphs)


def is_deferred(node: Any, specs: Mapping[str, Any]) -> bool:
    """Whether a ``PregelNode`` is a ``defer=True`` node (triggered only once the run has nothing left)."""
    return any(isinstance(specs.get(t), _DEFERRED_TRIGGERS) for t in node.triggers)


def is_internal_node(name: str) -> bool:
    """LangGraph's own input node."""
    return name == START


def drawn_successors(graph: Any) -> dict[str, set[str]]:
    """Each node of ``graph`` (a compiled graph) -> the nodes its drawn edges lead to (``get_graph()``:
    fixed edges and the possible targets of conditional ones), ``__start__`` and ``__end__`` included."""
    drawable = graph.get_graph()
    successors: dict[str, set[str]] = {node: set() for node in drawable.nodes}
    for edge in drawable.edges:
        successors[edge.source].add(edge.target)
    return successors


# --- a loop's state, and speculating on a copy of it -----------------------------------------------
def loop_nodes(loop: Any) -> Mapping[str, Any]:
    """The graph's nodes a loop runs (the very ``Pregel.nodes`` mapping)."""
    return loop.nodes


def loop_graph(loop: Any) -> Any:
    """The compiled graph a loop runs, or None. LangGraph gives a loop no reference to its graph, only
    the graph's bound checkpoint-migration method; its ``__self__`` is the graph."""
    return getattr(getattr(loop, "_migrate_checkpoint", None), "__self__", None)


def loop_specs(loop: Any) -> Mapping[str, Any]:
    """The graph's channel specs a loop runs with."""
    return loop.specs


def copy_state(loop: Any) -> tuple[dict, dict[str, Any]]:
    """A copy of the loop's checkpoint and channels, as they stand at the start of its step."""
    return copy_checkpoint(loop.checkpoint), {k: c.copy() for k, c in loop.channels.items()}


def apply(loop: Any, checkpoint: dict, channels: dict[str, Any], tasks: Sequence[Any]) -> set[str]:
    """Apply ``tasks``' writes to a copy made by ``copy_state``, as LangGraph ends a step; the
    channels updated."""
    return _algo.apply_writes(checkpoint, channels, tasks, loop.checkpointer_get_next_version, loop.trigger_to_nodes)


def writes_of(path: tuple, name: str, writes: Sequence[tuple[str, Any]], triggers: Sequence[str]) -> Any:
    """What ``apply`` takes for a task that is not a real one of the loop."""
    return _algo.PregelTaskWrites(path, name, writes, triggers)


def next_tasks(
    loop: Any, checkpoint: dict, channels: dict[str, Any], step: int, updated: set[str]
) -> list[PregelExecutableTask]:
    """The tasks a copy of the loop's state triggers at ``step`` (no callbacks attached)."""
    tasks = _algo.prepare_next_tasks(
        checkpoint,
        [],
        loop.nodes,
        channels,
        loop.managed,
        loop.config,
        step,
        loop.stop,
        for_execution=True,
        store=loop.store,
        checkpointer=loop.checkpointer,
        manager=None,
        trigger_to_nodes=loop.trigger_to_nodes,
        updated_channels=updated,
        retry_policy=loop.retry_policy,
        cache_policy=loop.cache_policy,
    )
    return list(tasks.values())


def is_pull(task: PregelExecutableTask) -> bool:
    """A task triggered by edges (not a ``Send`` or a functional-API call)."""
    return task.path[0] == C.PULL


def stopped(writes: Sequence[tuple[str, Any]]) -> bool:
    """Whether a task's writes say it failed or was interrupted."""
    return any(chan in STOP_CHANNELS for chan, _ in writes)


def current_step(loop: Any) -> int:
    """The step the loop is at (its tasks are this step's)."""
    return loop.step


def last_step(loop: Any) -> int:
    """The last step the recursion limit allows."""
    return loop.stop


def loop_tasks(loop: Any) -> list[PregelExecutableTask]:
    """The tasks of the loop's current step."""
    return list(getattr(loop, "tasks", {}).values())


def loop_attachment(loop: Any, default: Any) -> Any:
    """What Teola attached to a loop (``attach``), else ``default``."""
    return loop.__dict__.get("_teola", default)


def attach(loop: Any, value: Any) -> None:
    """Attach ``value`` to a loop for its lifetime (it goes when the loop goes)."""
    loop.__dict__["_teola"] = value


def on_loop_exit(loop: Any, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the loop exits, however it exits."""
    loop.stack.callback(callback)


def is_async_loop(loop: Any) -> bool:
    """Whether the loop runs an ``ainvoke``/``astream``."""
    return isinstance(loop, _loop.AsyncPregelLoop)


# --- callback handlers ------------------------------------------------------------------------------
# The classes a recorder standing in for a task's handlers must have, where the real handlers have them:
# LangChain's streaming markers, and LangGraph's ``messages`` handler (``push_message`` looks for it).
HANDLER_MARKERS: tuple[type, ...] = (*STREAMING_HANDLERS, StreamMessagesHandler)
MESSAGES_HANDLER: type = StreamMessagesHandler


def messages_handler_settings(handler: Any) -> dict[str, Any]:
    """What ``push_message`` reads of LangGraph's ``messages`` handler to decide whether to emit."""
    return {"subgraphs": handler.subgraphs, "parent_ns": handler.parent_ns}


def streams_node_outputs(loop: Any) -> bool:
    """Whether an async run streams each task's output (``astream_log``/``astream_events``), as
    ``Pregel.astream`` decides it."""
    handlers = loop.manager.handlers if loop.manager is not None else []
    return any(
        _is_stream_handler(h) and not isinstance(h, (StreamMessagesHandler, StreamToolCallHandler)) for h in handlers
    )


def is_cached(task: PregelExecutableTask) -> bool:
    """Whether LangGraph may serve a task's writes from its cache (it has a cache policy)."""
    return task.cache_key is not None


# --- a task's config ---------------------------------------------------------------------------------
def step_callbacks(loop: Any, step: int) -> BaseCallbackManager | None:
    """The callback manager LangGraph gives the tasks of ``step`` (child of the graph's run)."""
    return loop.manager.get_child(f"graph:step:{step}") if loop.manager is not None else None


def task_handlers(task: PregelExecutableTask) -> list[BaseCallbackHandler]:
    """The callback handlers of a real task."""
    callbacks = task.config.get("callbacks")
    return list(callbacks.handlers) if isinstance(callbacks, BaseCallbackManager) else []


def task_stream_writer(task: PregelExecutableTask) -> Callable[[Any], None] | None:
    """Where a real task's ``get_stream_writer()`` writes (LangGraph's custom stream mode)."""
    runtime = task.config[C.CONF].get(C.CONFIG_KEY_RUNTIME)
    return runtime.stream_writer if runtime is not None else None


@contextmanager
def in_task_context(task: PregelExecutableTask) -> Iterator[None]:
    """Inside this block ``get_config()`` (and so LangGraph's stream writer) sees ``task``'s config."""
    token = var_child_runnable_config.set(task.config)
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


def early_config(
    task: PregelExecutableTask,
    callbacks: BaseCallbackManager | None,
    stream_writer: Callable[[Any], None],
    note_read: Callable[[str | list[str]], None],
) -> RunnableConfig:
    """The config an early task runs with: ``callbacks`` (a recorder), custom stream writes to
    ``stream_writer``, and every read of the state by its conditional edges noted by ``note_read``."""
    configurable = task.config[C.CONF]
    read = configurable[C.CONFIG_KEY_READ]

    def noted_read(select: str | list[str], fresh: bool = False) -> Any:
        note_read(select)
        return read(select, fresh)

    patch: dict[str, Any] = {C.CONFIG_KEY_READ: noted_read}
    runtime = configurable.get(C.CONFIG_KEY_RUNTIME)
    if runtime is not None:
        patch[C.CONFIG_KEY_RUNTIME] = runtime.override(stream_writer=stream_writer)
    # Not patch_config: it runs ensure_config, which would copy the task's checkpoint_ns into the metadata.
    # As patch_config does with new callbacks, the caller's run_id goes: it named the graph's own run.
    config = {k: v for k, v in task.config.items() if k != "run_id"}
    return {**config, "callbacks": callbacks, C.CONF: {**configurable, **patch}}


def input_channels(node: Any) -> tuple[bool, list[str]]:
    """Whether a node's input is a plain dict keyed by channel (so its reads can be noted key by
    key), and the channels it is built from."""
    channels = [node.channels] if isinstance(node.channels, str) else list(node.channels)
    return node.mapper is None and not isinstance(node.channels, str), channels


# --- the hooks -----------------------------------------------------------------------------------------
class Hooks:
    """What Teola does at LangGraph's hook points (see ``install``); the default does nothing."""

    def ticked(self, loop: Any, more: bool) -> None:
        """The loop prepared its step's tasks (``more`` is False when the run ends)."""

    def apply_step(self, loop: Any, apply: Callable[[], None]) -> None:
        """The loop applies its step's writes by calling ``apply``."""
        apply()

    def committed(self, loop: Any, task_id: str, writes: Sequence[tuple[str, Any]]) -> None:
        """A task's writes were committed."""

    def run(self, task: PregelExecutableTask, run_native: Callable[[], Any]) -> Any:
        """Run a task of a sync run (``run_native`` runs it as LangGraph does, and returns what the
        runner gets back: a functional-API task's result)."""
        return run_native()

    async def arun(self, task: PregelExecutableTask, run_native: Callable[[], Any]) -> Any:
        """Run a task of an async run (``run_native`` returns LangGraph's awaitable)."""
        return await run_native()


_installed: list[Hooks] = []
_native_run: list[Callable[..., Any]] = []


def with_input_and_config(task: PregelExecutableTask, value: Any, config: RunnableConfig) -> PregelExecutableTask:
    """The same task, run on ``value`` with ``config``."""
    return dataclasses.replace(task, input=value, config=config)


def run_task(task: PregelExecutableTask) -> None:
    """Run a task as LangGraph's runner does (its retry policy included); its writes go to ``task.writes``."""
    _native_run[0](task, None)


async def arun_task(task: PregelExecutableTask, stream: bool) -> None:
    """``run_task`` in an async run (``stream``: run the task's ``astream``, as the runner does when
    a handler taps every task's output)."""
    await _native_run[1](task, None, stream)


def install(hooks: Hooks) -> None:
    """Put ``hooks`` at LangGraph's hook points, once per process."""
    if _installed:
        return
    _installed.append(hooks)
    tick, after_tick, put_writes = _loop.PregelLoop.tick, _loop.PregelLoop.after_tick, _loop.PregelLoop.put_writes
    run_with_retry, arun_with_retry = _runner.run_with_retry, _runner.arun_with_retry
    _native_run[:] = [run_with_retry, arun_with_retry]

    def hooked_tick(self: Any) -> bool:
        more = tick(self)
        hooks.ticked(self, more)
        return more

    def hooked_after_tick(self: Any) -> None:
        hooks.apply_step(self, partial(after_tick, self))

    def hooked_put_writes(self: Any, task_id: str, writes: Any, *, cached: bool = False) -> None:
        put_writes(self, task_id, writes, cached=cached)
        if writes:
            hooks.committed(self, task_id, writes)

    def hooked_run_with_retry(task: PregelExecutableTask, retry_policy: Any, configurable: Any = None) -> Any:
        return hooks.run(task, partial(run_with_retry, task, retry_policy, configurable))

    async def hooked_arun_with_retry(
        task: PregelExecutableTask, retry_policy: Any, stream: bool = False, configurable: Any = None
    ) -> Any:
        return await hooks.arun(task, partial(arun_with_retry, task, retry_policy, stream, configurable))

    _loop.PregelLoop.tick = hooked_tick
    _loop.PregelLoop.after_tick = hooked_after_tick
    _loop.PregelLoop.put_writes = hooked_put_writes
    _runner.run_with_retry = hooked_run_with_retry
    _runner.arun_with_retry = hooked_arun_with_retry
