"""Streams between primitives: an LLM's output read while it is still being decoded.

A streaming ``decode`` hands its consumers a ``TextStream`` at once and keeps appending to it; a
``parse`` primitive waits only until the items it needs are complete. Items are the parse
function's output on the text so far, cut at the last newline: a line-oriented parse (one item a
line) gives the same items on that prefix as on the whole text, so no item is taken early wrongly.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable

ItemParser = Callable[[str], list]


class TextStream:
    """Text that grows as deltas arrive; readers wait for a condition on it or for its end.

    ``producer`` is the task filling it, if one is known (and ``node`` the plan's node it runs): a reader of ``deltas`` that stops before
    the end abandons the stream, which cancels that task (and so aborts its engine request).
    Watchers (``follow``) read it without owning it; ``hold_end`` makes ``deltas`` readers see the
    end only once a watcher has reported it.
    """

    def __init__(self, producer: asyncio.Task | None = None, node: str | None = None) -> None:
        self.node = node  # the decode filling it, where it is a plan's
        self.text = ""
        self.ends: list[int] = []  # where each delta pushed ends in ``text``
        self.done = False
        self.error: BaseException | None = None
        self.producer = producer
        self._changed = asyncio.Condition()
        self._holds: list[asyncio.Future] = []

    def hold_end(self, reported: asyncio.Future) -> None:
        """``deltas`` readers see the end only once ``reported`` is done (what watches the stream
        has reported its end: the trace of the run that produced it is closed by then)."""
        self._holds.append(reported)

    def abandon(self) -> None:
        """Nobody reads on: stop the producer (a no-op once the text is done)."""
        if not self.done and self.producer is not None:
            self.producer.cancel()

    async def push(self, delta: str) -> None:
        """Append a delta and wake the readers."""
        async with self._changed:
            self.text += delta
            self.ends.append(len(self.text))
            self._changed.notify_all()

    async def finish(self, error: BaseException | None = None) -> None:
        """Mark the end of the text (also on early stop) and wake the readers; ``error`` if the producer failed."""
        async with self._changed:
            self.done = True
            self.error = error
            self._changed.notify_all()

    async def whole(self) -> str:
        """The whole text, once the stream has ended; raises the producer's error."""
        return await self.wait_until(lambda text: False)

    async def wait_until(self, ready: Callable[[str], bool]) -> str:
        """The text once ``ready(text)`` holds or the stream has ended; raises the producer's error."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.done or ready(self.text))
        if self.error is not None:
            raise self.error
        return self.text

    async def follow(self) -> AsyncIterator[str]:
        """The text delta by delta as it was pushed (however far behind the reader is), to its end;
        raises the producer's error. A watcher's read: stopping early leaves the stream to its readers."""
        read = 0
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: self.done or len(self.ends) > read)
            if self.error is not None:
                raise self.error
            while read < len(self.ends):
                yield self.text[self.ends[read - 1] if read else 0:self.ends[read]]
                read += 1
            if self.done and read == len(self.ends):
                return

    async def deltas(self) -> AsyncIterator[str]:
        """``follow``, for the stream's reader: its end comes once the watchers holding it
        (``hold_end``) have reported it; closing or cancelling the iteration before the end
        abandons the stream."""
        try:
            async for piece in self.follow():
                yield piece
            await asyncio.gather(*self._holds, return_exceptions=True)
        finally:
            self.abandon()


def complete_items(parse: ItemParser, text: str, done: bool) -> list:
    """The items of ``text`` that can no longer change: all of them once the text is done,
    else those on lines already ended by a newline."""
    if done:
        return parse(text)
    return parse(text[: text.rfind("\n") + 1])


async def read_items(parse: ItemParser, source: str | TextStream, items: tuple[int, int] | None) -> list:
    """Items ``items`` (start, stop) of what ``parse`` finds in ``source``, as soon as they are final."""
    if isinstance(source, str):
        found = parse(source)
    else:
        stop = items[1] if items else None
        await source.wait_until(lambda text: stop is not None and len(complete_items(parse, text, False)) >= stop)
        found = complete_items(parse, source.text, source.done)
    return found[items[0]:items[1]] if items else found
