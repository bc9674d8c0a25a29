"""Reading an async iterator pumped on one event loop (the runtime's) from another thread or loop."""

from __future__ import annotations

import asyncio
import queue
from typing import AsyncIterator, Iterator, TypeVar

T = TypeVar("T")

_END = object()


def iterate_on(loop: asyncio.AbstractEventLoop, stream: AsyncIterator[T]) -> Iterator[T]:
    """Yield the items of ``stream`` (pumped on ``loop``) in the calling thread, which must not be
    ``loop``'s; the stream's error, if any, is raised here. Closing the iterator stops the pump."""
    items: queue.Queue = queue.Queue()

    async def pump() -> None:
        try:
            async for item in stream:
                items.put(item)
        except BaseException as exc:  # handed to the consumer (if it still reads), which re-raises it
            items.put(exc)
        items.put(_END)

    pumping = asyncio.run_coroutine_threadsafe(pump(), loop)
    try:
        while (item := items.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        pumping.cancel()


async def aiterate_on(loop: asyncio.AbstractEventLoop, stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """Yield the items of ``stream`` (pumped on ``loop``) on the caller's own event loop."""
    here = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in stream:
                here.call_soon_threadsafe(items.put_nowait, item)
        except BaseException as exc:  # handed to the consumer (if it still reads), which re-raises it
            here.call_soon_threadsafe(items.put_nowait, exc)
        here.call_soon_threadsafe(items.put_nowait, _END)

    pumping = asyncio.run_coroutine_threadsafe(pump(), loop)
    try:
        while (item := await items.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        pumping.cancel()
