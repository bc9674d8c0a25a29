"""A streamed answer as LangChain streams it: the final LLM call's text deltas as the model's
chunks, passed through the chain's output parser's own ``transform``.

The parser streams with the config it is given (a child config of the chain run, tagged as the
parser's step): as in a native stream, it has a run of its own under the chain's.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import RunnableConfig

from teola.adapters.langchain import FinalGeneration


def _model_chunk(final: FinalGeneration, delta: str, message_id: str | None, last: bool = False) -> Any:
    """A text delta as the model streams it: a message chunk (``message_id``: its model run's) from
    a chat model, text from an LLM."""
    if not final.chat:
        return delta
    return AIMessageChunk(content=delta, id=message_id, chunk_position="last" if last else None)


def _model_chunks(final: FinalGeneration, deltas: Iterator[str], message_id: str | None) -> Iterator[Any]:
    yield from (_model_chunk(final, delta, message_id) for delta in deltas)
    if final.chat:  # a chat model's stream ends with an empty last chunk
        yield _model_chunk(final, "", message_id, last=True)


def answer_chunks(final: FinalGeneration, deltas: Iterator[str], config: RunnableConfig | None = None,
                  message_id: str | None = None) -> Iterator[Any]:
    """What the chain streams for these text deltas of its final LLM call."""
    chunks = _model_chunks(final, deltas, message_id)
    return final.parser.transform(chunks, config) if final.parser is not None else chunks


async def answer_achunks(final: FinalGeneration, deltas: AsyncIterator[str], config: RunnableConfig | None = None,
                         message_id: str | None = None) -> AsyncIterator[Any]:
    """``answer_chunks`` for async streams."""

    async def chunks() -> AsyncIterator[Any]:
        async for delta in deltas:
            yield _model_chunk(final, delta, message_id)
        if final.chat:
            yield _model_chunk(final, "", message_id, last=True)

    stream = final.parser.atransform(chunks(), config) if final.parser is not None else chunks()
    async for chunk in stream:
        yield chunk
