"""Iterate an async text stream that runs on the runtime's loop, from synchronous code or another loop.

A consumer that stops early (breaks out, closes the iterator, is cancelled) stops the stream on the
runtime's loop too: the engine request or the query's decode behind it is aborted, not left to run
to ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import queue
from typing import AsyncIterator, Iterator

from teola.runtime.runtime import Runtime

_END = object()


def iterate_sync(runtime: Runtime, stream: AsyncIterator[str]) -> Iterator[str]:
    """Yield the items of ``stream`` (pumped on ``runtime``'s loop) in the calling thread; the
    stream's error, if any, is raised here."""
    items: queue.Queue = queue.Queue()

    async def pump() -> None:
        try:
            async for item in stream:
                items.put(item)
        except BaseException as exc:  # handed to the consumer (if it still reads), which re-raises it
            items.put(exc)
        items.put(_END)

    pumping = runtime.submit(pump())
    try:
        while (item := items.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        pumping.cancel()


async def iterate_async(runtime: Runtime, stream: AsyncIterator[str]) -> AsyncIterator[str]:
    """Yield the items of ``stream`` (pumped on ``runtime``'s loop) on the caller's own event loop."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in stream:
                loop.call_soon_threadsafe(items.put_nowait, item)
        except BaseException as exc:  # handed to the consumer (if it still reads), which re-raises it
            loop.call_soon_threadsafe(items.put_nowait, exc)
        loop.call_soon_threadsafe(items.put_nowait, _END)

    pumping = runtime.submit(pump())
    try:
        while (item := await items.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        pumping.cancel()
