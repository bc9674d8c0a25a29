"""Admission control: a bound on the queries the runtime runs and holds, and a per-query deadline.

At most ``max_in_flight`` queries run at once; up to ``max_waiting`` more wait their turn in arrival
order; a query beyond that is refused at once with ``OverloadedError`` (backpressure a caller can
act on, rather than a queue that grows until memory runs out). With ``timeout_s`` a query that has
not answered in time is cancelled, its primitives' engine work aborted, and ``QueryTimeoutError``
names what was still running. Every engine queue holds work of admitted queries only, so bounding
the queries bounds them all.

A query started from inside an admitted query (an app that calls another optimized app in one of
its steps) runs in its parent's slot: were it to wait for a slot of its own, parents holding every
slot would wait forever on children that wait for them.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from teola.runtime.errors import OverloadedError, QueryTimeoutError

T = TypeVar("T")

_inside_query: contextvars.ContextVar[bool] = contextvars.ContextVar("teola_inside_query", default=False)


def inside_query() -> bool:
    """Whether the calling code runs as part of an admitted query (its steps, their threads and tasks)."""
    return _inside_query.get()


def query_context() -> contextvars.Context:
    """A copy of the current context marked as inside a query: for running a query's steps in (threads
    do not inherit the context of the task that hands them work)."""
    context = contextvars.copy_context()
    context.run(_inside_query.set, True)
    return context


@dataclass(frozen=True)
class QueryLimits:
    """How many queries run at once, how many may wait, and how long one may take (None: no limit)."""

    max_in_flight: int = 64
    max_waiting: int = 1024
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.max_waiting < 0:
            raise ValueError(f"max_in_flight must be >= 1 and max_waiting >= 0, got {self.max_in_flight}, {self.max_waiting}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive (or None for no limit), got {self.timeout_s}")


class AdmissionGate:
    """Admits queries under ``limits``; lives on the runtime's event loop."""

    def __init__(self, limits: QueryLimits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.max_in_flight)
        self.running = 0
        self.waiting = 0
        self.refused = 0

    async def run(self, query: Callable[[], Awaitable[T]], unfinished: Callable[[], list[str]] = list,
                  nested: bool = False) -> T:
        """Run ``query()`` once admitted; ``unfinished()`` names its pending work if it times out.
        A ``nested`` query (started inside an admitted one) runs at once, in its parent's slot and deadline."""
        if nested:
            return await query()
        if self._slots.locked() and self.waiting >= self.limits.max_waiting:
            self.refused += 1
            raise OverloadedError(
                f"the runtime is full: {self.running} queries running and {self.waiting} waiting "
                f"(QueryLimits max_in_flight={self.limits.max_in_flight}, max_waiting={self.limits.max_waiting}); "
                "retry later, send fewer queries at once, or raise the limits")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        inside = _inside_query.set(True)  # for this task and what it starts: nested queries take no second slot
        try:
            if self.limits.timeout_s is None:
                return await query()
            return await self._within_deadline(query, unfinished)
        finally:
            _inside_query.reset(inside)
            self.running -= 1
            self._slots.release()

    async def _within_deadline(self, query: Callable[[], Awaitable[T]], unfinished: Callable[[], list[str]]) -> T:
        task = asyncio.ensure_future(query())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.limits.timeout_s)
        except asyncio.CancelledError:  # the caller gave up: so does the query
            task.cancel()
            raise
        if done:
            return task.result()
        pending = unfinished()  # named before the cancellation clears them
        task.cancel()
        await asyncio.wait({task})
        raise QueryTimeoutError(f"the query did not answer within {self.limits.timeout_s} s (QueryLimits.timeout_s); "
                                f"cancelled, with these primitives unfinished: {', '.join(pending) or 'none'}")
