"""Each query's trace, handed to whoever asked for it: ``with record_traces() as traces: ...``.

A trace (``QueryTrace``: when each primitive of one query ran) belongs to its query. Code that wants
the traces of the queries it runs opens ``record_traces()``; every query run under it (in this
thread, or in tasks started under it) appends its trace to the list, in completion order. Queries
that overlap never overwrite one another's trace, and nothing is kept when nobody asks.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator

from teola.runtime.graph_scheduler import QueryTrace

_recording: contextvars.ContextVar[list[QueryTrace] | None] = contextvars.ContextVar("teola_traces", default=None)


@contextmanager
def record_traces() -> Iterator[list[QueryTrace]]:
    """A list that collects the trace of every query run inside the ``with`` block."""
    traces: list[QueryTrace] = []
    token = _recording.set(traces)
    try:
        yield traces
    finally:
        _recording.reset(token)


def deliver(trace: QueryTrace) -> None:
    """Hand ``trace`` to the recording open in the caller's context, if any."""
    traces = _recording.get()
    if traces is not None:
        traces.append(trace)
