"""A streamed answer as LangChain streams it: the final LLM call's text deltas as the model's
chunks, passed through the chain's output parser's own ``transform``."""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

from langchain_core.messages import AIMessageChunk

from teola.adapters.langchain import FinalGeneration

# The parser runs as part of the lowered call: like the invoke path, it reports no run of its own.
_NO_CALLBACKS = {"callbacks": []}


def answer_chunks(final: FinalGeneration, deltas: Iterator[str]) -> Iterator[Any]:
    """What the chain streams for these text deltas of its final LLM call."""
    chunks = (AIMessageChunk(content=delta) if final.chat else delta for delta in deltas)
    return final.parser.transform(chunks, _NO_CALLBACKS) if final.parser is not None else chunks


async def answer_achunks(final: FinalGeneration, deltas: AsyncIterator[str]) -> AsyncIterator[Any]:
    """``answer_chunks`` for async streams."""

    async def chunks() -> AsyncIterator[Any]:
        async for delta in deltas:
            yield AIMessageChunk(content=delta) if final.chat else delta

    stream = final.parser.atransform(chunks(), _NO_CALLBACKS) if final.parser is not None else chunks()
    async for chunk in stream:
        yield chunk
