"""A streamed answer's tokens, handed out as a streaming LlamaIndex synthesizer hands its own.

A streaming synthesizer answers with a ``StreamingResponse`` whose ``response_gen`` yields the
tokens of its last LLM call (an ``AsyncStreamingResponse`` and an async generator in an
``aquery``). Teola's answer is the text stream of a decode running on the runtime's loop;
``answer_tokens`` reads it from the caller's thread or loop, delta by delta, raising a failed
decode's own error (the LLM client's), as the native generator would.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Iterator

from teola.adapters.llama_index.as_asked import asked_asynchronously
from teola.runtime.errors import PrimitiveError, original_error
from teola.runtime.loop_bridge import aiterate_on, iterate_on
from teola.runtime.streams import TextStream


def answer_tokens(stream: TextStream) -> Iterator[str] | AsyncIterator[str]:
    """The tokens of ``stream`` as a generator (an async generator where the query was asked with
    ``aquery``); called on the loop the stream is filled on. Closing it early stops the decode."""
    loop = asyncio.get_running_loop()
    return _atokens(loop, stream) if asked_asynchronously() else _tokens(loop, stream)


def _tokens(loop: asyncio.AbstractEventLoop, stream: TextStream) -> Iterator[str]:
    try:
        yield from iterate_on(loop, stream.deltas())
    except PrimitiveError as exc:
        raise original_error(exc) from None


async def _atokens(loop: asyncio.AbstractEventLoop, stream: TextStream) -> AsyncIterator[str]:
    try:
        async for token in aiterate_on(loop, stream.deltas()):
            yield token
    except PrimitiveError as exc:
        raise original_error(exc) from None
