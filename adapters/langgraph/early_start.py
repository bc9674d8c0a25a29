"""Early starts: a LangGraph node of step N+1 runs while step N's slow siblings still run.

LangGraph's loop stays in charge: it prepares each step's tasks, applies their writes in its order,
checkpoints and streams. Teola only moves *when* a pure node's work happens (``purity.py`` says which
nodes are pure). The rule:

1. Whenever a task finishes (a real one, or an early one), Teola copies the loop's state as it stood
   at the start of the current step, applies the writes of the tasks finished so far, step after
   step as LangGraph would apply them, and asks LangGraph which tasks that state triggers in the
   next step. Each such task of a pure node that is not running yet starts now, on that state.
2. The early run's input notes what the node reads (``reads.py``), and its conditional edges' reads
   of the state are noted too. Its writes, callbacks and custom-stream writes are kept aside.
3. When LangGraph's loop reaches that task, the early run is adopted only if every task whose
   writes the early state lacked, or had that the real state does not, wrote none of what the node
   read. Then its writes become the real task's writes and its callbacks are replayed to the real
   task's handlers; LangGraph commits them as its own. Otherwise the node runs again, as LangGraph
   runs it (allowed: it is pure). An early run that raised or interrupted is never adopted.

So the state after every step, every streamed chunk and every reducer's result are LangGraph's; the
gain is that a node's work overlaps siblings it does not depend on. Tasks of ``Send``, functional
``call``s, subgraphs and ``defer=True`` joins run only when LangGraph runs them (a graph's first
``Send`` says so in one log line).

Every task of the graph, early or not, sends its engine work at its node's priority
(``node_order``): the nodes with the most of the graph still behind them are served first.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import weakref
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from teola.adapters.langgraph import compat
from teola.adapters.langgraph.callback_replay import (
    STREAM_WRITE,
    CallbackRecorder,
    Rewrite,
    areplay,
    recorder_for,
    replay,
)
from teola.adapters.langgraph.purity import EarlyStartPolicy
from teola.adapters.langgraph.reads import ReadRecordingState, Reads
from teola.runtime.query_priority import prioritized, query_priority

log = logging.getLogger(__name__)
# Early runs started, adopted by their real task, and run again because their input changed.
EARLY: Counter[str] = Counter()
_count_lock = threading.Lock()
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="teola-langgraph")


@dataclass(frozen=True)
class Entry:
    """One task's writes applied in a step: ``token`` names those very writes."""

    token: object
    channels: frozenset[str]


# step -> task path -> the writes of that task applied in that step
History = dict[int, dict[tuple, Entry]]


def _count(what: str) -> None:
    with _count_lock:
        EARLY[what] += 1


def _channels(writes: Sequence[tuple[str, Any]]) -> frozenset[str]:
    return frozenset(chan for chan, _ in writes)


def conflicting_channels(basis: History, history: History) -> set[str] | None:
    """The channels written differently in ``history`` than in ``basis`` over ``basis``'s steps (a task
    in one and not the other, or with other writes); None when ``history`` lacks one of those steps."""
    conflicts: set[str] = set()
    for step, entries in basis.items():
        actual = history.get(step)
        if actual is None:
            return None
        for path in entries.keys() | actual.keys():
            early, real = entries.get(path), actual.get(path)
            if early is None or real is None or early.token is not real.token:
                for entry in (early, real):
                    if entry is not None:
                        conflicts |= entry.channels
    return conflicts


class EarlyRun:
    """One node run started ahead of its step, on the state ``basis`` describes."""

    def __init__(self, task: Any, step: int, basis: History, value: Any, reads: Reads, recorder: CallbackRecorder):
        self.task, self.step, self.basis, self.value, self.reads, self.recorder = task, step, basis, value, reads, recorder
        self.token = object()
        self.finished = threading.Event()
        self.ok = False
        self.handle: asyncio.Task | None = None
        self._state = "queued"  # -> "running", or -> "withdrawn" (its real task came first)
        self._state_lock = threading.Lock()

    def begin(self) -> bool:
        """Called where the run starts: whether it may (it was not withdrawn while queued)."""
        with self._state_lock:
            if self._state == "queued":
                self._state = "running"
            return self._state == "running"

    def withdraw_if_queued(self) -> bool:
        """Withdraw the run if it has not started (its real task will run instead): whether it was."""
        with self._state_lock:
            if self._state == "queued":
                self._state = "withdrawn"
            return self._state == "withdrawn"

    def entry(self) -> Entry:
        """This run's writes as a history entry."""
        return Entry(self.token, _channels(self.task.writes))

    def read_changed(self, history: History) -> bool:
        """Whether what this run read so far is known to differ in ``history``."""
        conflicts = conflicting_channels(self.basis, history)
        return conflicts is None or self.reads.touches(conflicts)

    def valid_on(self, history: History) -> bool:
        """Whether this run finished, and its result is what it returns on ``history``'s state."""
        return self.finished.is_set() and self.ok and not self.read_changed(history)


class EarlyStarts:
    """Early starts in one LangGraph run (one Pregel loop)."""

    def __init__(self, loop: Any, policy: EarlyStartPolicy) -> None:
        # The loop only weakly: LangGraph frees a finished loop by reference counting alone.
        self._loop, self.policy = weakref.ref(loop), policy
        self.is_async = compat.is_async_loop(loop)
        self.stream_outputs = self.is_async and compat.streams_node_outputs(loop)
        self.context = contextvars.copy_context()
        self.outer_priority = query_priority()  # what the graph was run at (a subgraph: its parent node's)
        self.lock = threading.RLock()
        self.runs: dict[tuple[int, tuple], EarlyRun] = {}
        self.finished_steps: History = {}
        self.tokens: dict[str, object] = {}  # this step's committed tasks -> the token of their writes
        self.adopted: dict[str, object] = {}  # real task id -> token of the early run it adopted
        self.closed = False

    @property
    def loop(self) -> Any:
        """The loop (None once LangGraph has freed it)."""
        return self._loop()

    def prioritized(self, task: Any) -> Any:
        """The context in which ``task`` sends its engine work: at its node's priority (``node_order``)."""
        return prioritized(self.outer_priority - self.policy.depths.get(task.name, 0))

    # --- building the frontier ------------------------------------------------------------------------
    def _history_now(self) -> tuple[History, list[Any], int]:
        step = compat.current_step(self.loop)
        done = [t for t in compat.loop_tasks(self.loop) if t.id in self.tokens]
        history = dict(self.finished_steps)
        history[step] = {t.path: Entry(self.tokens[t.id], _channels(t.writes)) for t in done}
        return history, done, step

    def refresh(self) -> None:
        """Start every early run the tasks finished so far make possible (rule 1). Whatever goes wrong
        here (say, the finished writes are invalid together) only means nothing more starts early: the
        real step meets the same error, as LangGraph reports it."""
        with self.lock:
            loop = self.loop  # held for the call
            if self.closed or loop is None or not self.policy.early:
                return
            try:
                self._extend_frontier()
            except Exception:
                log.debug("teola: no early starts from this state", exc_info=True)

    def _extend_frontier(self) -> None:
        history, level, step = self._history_now()
        if any(compat.stopped(t.writes) for t in level) or len(level) == len(compat.loop_tasks(self.loop)):
            return  # the step failed, or it is over and LangGraph's loop starts the next one now itself
        first = step
        checkpoint, channels = compat.copy_state(self.loop)
        while level and step < compat.last_step(self.loop):
            updated = compat.apply(self.loop, checkpoint, channels, level)
            step += 1
            level, entries = [], {}
            for task in compat.next_tasks(self.loop, checkpoint, channels, step, updated):
                if not (compat.is_pull(task) and task.name in self.policy.early) or compat.is_cached(task):
                    continue
                run = self.runs.get((step, task.path))
                if run is not None and run.valid_on(history):
                    level.append(compat.writes_of(task.path, task.name, run.task.writes, task.triggers))
                    entries[task.path] = run.entry()
                elif run is None or (run.finished.is_set() and run.ok):
                    if run is not None:  # it read what has changed since it started
                        _count("rerun")
                    self._start(task, step, {s: history[s] for s in range(first, step)})
            history[step] = entries

    def _start(self, task: Any, step: int, basis: History) -> None:
        reads = Reads()
        plain_dict, channels = compat.input_channels(self.policy.nodes[task.name])
        if plain_dict and type(task.input) is dict:
            value: Any = ReadRecordingState(task.input, reads)
        else:
            value = task.input
            reads.note_channels(channels)
        callbacks = compat.step_callbacks(self.loop, step)
        recorder = recorder_for(callbacks.handlers if callbacks is not None else [])
        if callbacks is not None:
            callbacks.set_handlers([recorder])
        config = compat.early_config(
            task, callbacks, lambda chunk: recorder.record(STREAM_WRITE, (chunk,), {}), reads.note_channels
        )
        run = EarlyRun(compat.with_input_and_config(task, value, config), step, basis, value, reads, recorder)
        self.runs[(step, task.path)] = run
        _count("started")
        if self.is_async:
            run.handle = asyncio.get_running_loop().create_task(self._arun(run), context=self.context.copy())
        else:
            _POOL.submit(self.context.copy().run, self._run, run)

    def _run(self, run: EarlyRun) -> None:
        if run.begin():
            try:
                with self.prioritized(run.task):
                    compat.run_task(run.task)
                run.ok = not compat.stopped(run.task.writes)
            except BaseException:  # an early run that fails is never adopted: the real task fails as LangGraph's
                log.debug("teola: early run of %s failed; it runs in its step", run.task.name, exc_info=True)
        self._ended(run)

    async def _arun(self, run: EarlyRun) -> None:
        if run.begin():
            try:
                with self.prioritized(run.task):
                    await compat.arun_task(run.task, self.stream_outputs)
                run.ok = not compat.stopped(run.task.writes)
            except BaseException:  # see _run; also cancelled when the graph run ends first
                log.debug("teola: early run of %s failed; it runs in its step", run.task.name, exc_info=True)
        self._ended(run)

    def _ended(self, run: EarlyRun) -> None:
        run.finished.set()
        self.refresh()

    # --- LangGraph's loop -----------------------------------------------------------------------------
    def committed(self, task_id: str) -> None:
        """A real task of the current step committed its writes."""
        if not self.policy.early:  # nothing may start early: only the priorities are Teola's
            return
        with self.lock:
            self.tokens.setdefault(task_id, self.adopted.pop(task_id, None) or object())
        self.refresh()

    def apply_step(self, apply: Callable[[], None]) -> None:
        """LangGraph applies the current step's writes (under the lock: early runs copy the state)."""
        if not self.policy.early:
            apply()
            return
        with self.lock:
            step = compat.current_step(self.loop)
            self.finished_steps[step] = {
                t.path: Entry(self.tokens.get(t.id) or object(), _channels(t.writes))
                for t in compat.loop_tasks(self.loop)
            }
            self.tokens.clear()
            for key in [k for k in self.runs if k[0] <= step]:
                del self.runs[key]
            apply()

    def claim(self, task: Any) -> EarlyRun | None:
        """The early run of a real task, unless what it read so far is known to have changed."""
        with self.lock:
            run = self.runs.get((compat.current_step(self.loop), task.path))
            if run is None or run.withdraw_if_queued():  # still queued behind other early runs: run it now
                return None
            if run.read_changed(self.finished_steps):
                _count("rerun")
                return None
            return run

    def adoptable(self, run: EarlyRun) -> bool:
        """Rule 3: whether the finished ``run`` returns what the real task would."""
        with self.lock:
            if run.valid_on(self.finished_steps):
                return True
        _count("rerun")
        return False

    def _take(self, run: EarlyRun, task: Any) -> Rewrite:
        task.writes.extend(run.task.writes)
        with self.lock:
            self.adopted[task.id] = run.token
        _count("adopted")
        return Rewrite(run.value, task.input, run.task.id, task.id)

    def adopt(self, run: EarlyRun, task: Any) -> None:
        """The real ``task`` takes ``run``'s writes; its callbacks are replayed to the task's handlers."""
        rewrite = self._take(run, task)
        with compat.in_task_context(task):
            replay(run.recorder.events, compat.task_handlers(task), rewrite, compat.task_stream_writer(task))

    async def aadopt(self, run: EarlyRun, task: Any) -> None:
        """``adopt`` in an async run."""
        rewrite = self._take(run, task)
        with compat.in_task_context(task):
            await areplay(run.recorder.events, compat.task_handlers(task), rewrite, compat.task_stream_writer(task))

    def close(self) -> None:
        """The graph run ended: start nothing more, cancel what runs on its event loop."""
        with self.lock:
            self.closed = True
            for run in self.runs.values():
                if run.handle is not None and not run.handle.done():
                    run.handle.cancel()
            self.runs.clear()


class EarlyStartHooks(compat.Hooks):
    """LangGraph's hook points, for every loop whose graph ``policy_for`` gives early starts to."""

    _UNSEEN = object()

    def __init__(self, policy_for: Callable[[Any], EarlyStartPolicy | None]) -> None:
        self._policy_for = policy_for
        self._by_task: weakref.WeakValueDictionary[str, EarlyStarts] = weakref.WeakValueDictionary()
        self._told_send: set[int] = set()  # the graphs (ids of their nodes) whose Send tasks were logged

    def _for_loop(self, loop: Any) -> EarlyStarts | None:
        starts = compat.loop_attachment(loop, self._UNSEEN)
        if starts is self._UNSEEN:
            policy = self._policy_for(loop)
            starts = EarlyStarts(loop, policy) if policy is not None and (policy.early or policy.depths) else None
            compat.attach(loop, starts)
            if starts is not None:
                compat.on_loop_exit(loop, starts.close)
        return starts

    def ticked(self, loop: Any, more: bool) -> None:
        """Register the step's tasks, and start what their already-finished siblings allow."""
        starts = self._for_loop(loop)
        if starts is None:
            return
        if not more:
            starts.close()
            return
        tasks = compat.loop_tasks(loop)
        for task in tasks:
            self._by_task[task.id] = starts
        self._tell_send(starts.policy, tasks)
        starts.refresh()

    def _tell_send(self, policy: EarlyStartPolicy, tasks: Sequence[Any]) -> None:
        """One log line for a graph's first ``Send`` task that could otherwise have started early."""
        if id(policy.nodes) in self._told_send:
            return
        sent = sorted({t.name for t in tasks if not compat.is_pull(t) and t.name in policy.early})
        if sent:
            self._told_send.add(id(policy.nodes))
            log.info("teola: Send tasks (of %s) run in their step, as LangGraph runs them: Teola starts only "
                     "edge-triggered tasks early", ", ".join(sent))

    def apply_step(self, loop: Any, apply: Callable[[], None]) -> None:
        """Apply the step's writes under the early starts' lock."""
        starts = compat.loop_attachment(loop, None)
        if starts is None:
            apply()
            return
        for task in compat.loop_tasks(loop):
            self._by_task.pop(task.id, None)
        starts.apply_step(apply)

    def committed(self, loop: Any, task_id: str, writes: Sequence[tuple[str, Any]]) -> None:
        """A real task finished: maybe more can start now."""
        starts = compat.loop_attachment(loop, None)
        if starts is not None:
            starts.committed(task_id)

    def run(self, task: Any, run_native: Callable[[], Any]) -> Any:
        """Adopt the task's early run if it holds (waiting for it if it still runs), else run it."""
        starts = self._by_task.get(task.id)
        if starts is None:
            return run_native()
        run = starts.claim(task)
        if run is not None:
            run.finished.wait()
            if starts.adoptable(run):
                starts.adopt(run, task)
                return None  # what LangGraph's runner gets for an edge-triggered task (it reads the writes)
        with starts.prioritized(task):
            return run_native()

    async def arun(self, task: Any, run_native: Callable[[], Any]) -> Any:
        """``run`` in an async run."""
        starts = self._by_task.get(task.id)
        if starts is None:
            return await run_native()
        run = starts.claim(task)
        if run is not None:
            if run.handle is not None:
                await asyncio.shield(run.handle)
            if starts.adoptable(run):
                await starts.aadopt(run, task)
                return None
        with starts.prioritized(task):
            return await run_native()
