"""Components Teola runs as-is, run as the framework would in the query at hand.

Natively a ``query`` calls a component's sync methods (``retrieve``, ``synthesize``) and an
``aquery`` their async twins (``aretrieve``, ``asynthesize``), on the caller's event loop; the
twins report their own spans (``aretrieve`` ...) and may take other code paths. Teola runs such a
component on a thread of its runtime; ``run_as_asked`` runs the sync method there in a ``query``
and, in an ``aquery``, schedules the twin on the caller's loop (which is free: it awaits the
query) and waits for it, in the thread's context (the span it goes under, the instrument tags).
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Awaitable, Callable, Iterator, TypeVar

T = TypeVar("T")

_caller_loop: ContextVar[asyncio.AbstractEventLoop | None] = ContextVar("teola_llama_index_caller_loop", default=None)


@contextmanager
def asked(asynchronously: bool) -> Iterator[None]:
    """The query run inside was asked with ``aquery`` (on the running loop) or with ``query``."""
    token = _caller_loop.set(asyncio.get_running_loop() if asynchronously else None)
    try:
        yield
    finally:
        _caller_loop.reset(token)


def asked_asynchronously() -> bool:
    """Whether the query running here was asked with ``aquery`` (``achat`` ...)."""
    return _caller_loop.get() is not None


def run_as_asked(sync: Callable[..., T], twin: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """``sync(*args, **kwargs)``, or its async ``twin`` on the caller's loop where the query was
    asked with ``aquery``; called on a runtime thread, never on the caller's loop."""
    loop = _caller_loop.get()
    if loop is None:
        return sync(*args, **kwargs)
    return asyncio.run_coroutine_threadsafe(twin(*args, **kwargs), loop).result()
