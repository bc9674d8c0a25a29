"""A streamed answer as LangChain streams it: the final LLM call's text deltas as the model's
chunks, passed through the chain's output parser's own ``transform``.

The parser streams with the config it is given (the chain run's child config): as in a native
stream, it has a run of its own under the chain's.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import RunnableConfig

from teola.adapters.langchain import FinalGeneration


def _model_chunk(final: FinalGeneration, delta: str) -> Any:
    """A text delta as the model streams it: a message chunk from a chat model, text from an LLM."""
    return AIMessageChunk(content=delta) if final.chat else delta


def answer_chunks(final: FinalGeneration, deltas: Iterator[str], config: RunnableConfig | None = None) -> Iterator[Any]:
    """What the chain streams for these text deltas of its final LLM call."""
    chunks = (_model_chunk(final, delta) for delta in deltas)
    return final.parser.transform(chunks, config) if final.parser is not None else chunks


async def answer_achunks(final: FinalGeneration, deltas: AsyncIterator[str],
                         config: RunnableConfig | None = None) -> AsyncIterator[Any]:
    """``answer_chunks`` for async streams."""

    async def chunks() -> AsyncIterator[Any]:
        async for delta in deltas:
            yield _model_chunk(final, delta)

    stream = final.parser.atransform(chunks(), config) if final.parser is not None else chunks()
    async for chunk in stream:
        yield chunk
