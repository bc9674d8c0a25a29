"""A streamed answer's tokens, handed out as a streaming LlamaIndex synthesizer hands its own.

A streaming synthesizer answers with a ``StreamingResponse`` whose ``response_gen`` yields the
tokens of its last LLM call (an ``AsyncStreamingResponse`` and an async generator in an
``aquery``); natively that call starts where its reader first reads, and reports its spans there
(the user's own span, a chat engine's writer thread). Teola's answer is the text stream of a decode
already running on the runtime's loop; ``answer_tokens`` reads it from the caller's thread or loop,
delta by delta, raising a failed decode's own error (the LLM client's), as the native generator
would, and tells ``read`` where its reader began reading (``ReadingPlace``; None once it is dropped
unread), which is where the call's spans go. An answer dropped unread stops its decode: natively its
call never starts.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, AsyncIterator, Iterator

from teola.adapters.llama_index.as_asked import asked_asynchronously
from teola.adapters.llama_index.spans import ReadingPlace, reading_place
from teola.optimizer.values import SKIPPED
from teola.runtime.errors import PrimitiveError, original_error
from teola.runtime.loop_bridge import aiterate_on, iterate_on
from teola.runtime.streams import TextStream


def answer_tokens(stream: TextStream, read: asyncio.Future | None = None) -> Iterator[str] | AsyncIterator[str]:
    """The tokens of ``stream`` as a generator (an async generator where the query was asked with
    ``aquery``); called on the loop the stream is filled on, whose future ``read`` (where given) it
    sets. Closing it early, or dropping it unread, stops the decode."""
    loop = asyncio.get_running_loop()
    tokens = _atokens(loop, stream, read) if asked_asynchronously() else _tokens(loop, stream, read)
    weakref.finalize(tokens, _dropped, loop, stream, read)
    return tokens


async def where_read(read: Any) -> ReadingPlace | Any:
    """Where the reader of a streamed answer began reading it, once it has (``read``: the future
    ``answer_tokens`` sets; None where the answer did not stream); SKIPPED where it never did."""
    future = await read
    place = None if future is None else await future
    return SKIPPED if place is None else place


def _dropped(loop: asyncio.AbstractEventLoop, stream: TextStream, read: asyncio.Future | None) -> None:
    """The tokens are gone: where nobody read them, ``read`` has no place and the decode stops (a no-op
    on a stream read to its end)."""
    _tell(loop, read, None)
    if not loop.is_closed():
        loop.call_soon_threadsafe(stream.abandon)


def _tell(loop: asyncio.AbstractEventLoop, read: asyncio.Future | None, place: ReadingPlace | None) -> None:
    """Settle ``read`` with ``place`` from any thread (the first word only; nothing where ``read`` is None)."""

    def settle() -> None:
        if not read.done():
            read.set_result(place)

    if read is not None and not loop.is_closed():
        loop.call_soon_threadsafe(settle)


def _tokens(loop: asyncio.AbstractEventLoop, stream: TextStream, read: asyncio.Future | None) -> Iterator[str]:
    _tell(loop, read, reading_place())
    try:
        yield from iterate_on(loop, stream.deltas())
    except PrimitiveError as exc:
        raise original_error(exc) from None


async def _atokens(loop: asyncio.AbstractEventLoop, stream: TextStream,
                   read: asyncio.Future | None) -> AsyncIterator[str]:
    _tell(loop, read, reading_place())
    try:
        async for token in aiterate_on(loop, stream.deltas()):
            yield token
    except PrimitiveError as exc:
        raise original_error(exc) from None
