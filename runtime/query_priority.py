"""The priority of the work the calling code sends the engines, where no graph of Teola's ranks it.

A plan's primitives are ranked by the runtime's scheduling policy. Work sent from outside a plan (a
model class backed by the shared engines, called in a framework's own step) carries the priority of
the code that sends it: ``query_priority()``, 0 unless an adapter that knows more has set it with
``prioritized`` (say, a graph node with a long path still ahead of it). Lower is served first; a
plan started inside such code runs its queries at that priority too.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator

from teola.runtime.requests import Priority

_query_priority: contextvars.ContextVar[int] = contextvars.ContextVar("teola_query_priority", default=0)


def query_priority() -> int:
    """The query priority of work sent from the calling code (lower is served first)."""
    return _query_priority.get()


def request_priority() -> Priority:
    """The priority of a request sent from the calling code outside any plan: its query priority, rank 0."""
    return (_query_priority.get(), 0)


@contextmanager
def prioritized(priority: int) -> Iterator[None]:
    """Send the ``with`` block's engine work (and the threads and tasks it starts with this context) at
    query priority ``priority``."""
    token = _query_priority.set(priority)
    try:
        yield
    finally:
        _query_priority.reset(token)
