"""What the framework model classes backed by Teola's engines send: the graph's own typed requests.

A ``TeolaLLM`` or ``TeolaEmbeddings`` called natively sends its engine the same ``TokenizeRequest``,
``GenerateRequest``, ``EmbedRequest`` and ``SearchRequest`` a primitive of an optimized graph sends,
so native calls and optimized queries batch together on one engine. Each client holds the runtime
it was given: sync callers block on its loop, async callers await it from their own loop.
"""

from __future__ import annotations

from typing import AsyncIterator, Iterator, Sequence

from teola.optimizer.ops import EngineId
from teola.optimizer.values import Prompt, Sampling
from teola.runtime.engine_scheduler import BatchingScheduler, LLMScheduler
from teola.runtime.requests import EmbedRequest, GenerateRequest, SearchRequest, TokenizeRequest
from teola.runtime.runtime import Runtime
from teola_integrations.streaming import iterate_async, iterate_sync


class LLMClient:
    """Text and text deltas for prompts, from a shared LLM engine."""

    def __init__(self, runtime: Runtime, engine: LLMScheduler) -> None:
        self.runtime = runtime
        self.engine = engine

    @property
    def id(self) -> EngineId:
        """The engine's identity, as the graphs name it."""
        return self.engine.id

    async def _request(self, prompt: Prompt, sampling: Sampling) -> GenerateRequest:
        [token_ids] = await self.engine.execute(TokenizeRequest((prompt,)))
        return GenerateRequest((token_ids,), sampling)

    async def _text(self, prompt: Prompt, sampling: Sampling) -> str:
        [text] = await self.engine.execute(await self._request(prompt, sampling))
        return text

    async def _deltas(self, prompt: Prompt, sampling: Sampling) -> AsyncIterator[str]:
        async for delta in self.engine.stream(await self._request(prompt, sampling)):
            yield delta

    def text(self, prompt: Prompt, sampling: Sampling) -> str:
        """The whole generated text (blocks)."""
        return self.runtime.run(self._text(prompt, sampling))

    async def atext(self, prompt: Prompt, sampling: Sampling) -> str:
        """The whole generated text, from any event loop."""
        return await self.runtime.arun(self._text(prompt, sampling))

    def deltas(self, prompt: Prompt, sampling: Sampling) -> Iterator[str]:
        """Text deltas as the engine produces them; closing the iterator aborts the request."""
        return iterate_sync(self.runtime, self._deltas(prompt, sampling))

    def adeltas(self, prompt: Prompt, sampling: Sampling) -> AsyncIterator[str]:
        """Text deltas on the caller's event loop; closing the iterator aborts the request."""
        return iterate_async(self.runtime, self._deltas(prompt, sampling))


class EmbeddingClient:
    """Vectors for texts, from a shared embedding engine (batched with every query in flight)."""

    def __init__(self, runtime: Runtime, engine: BatchingScheduler) -> None:
        self.runtime = runtime
        self.engine = engine

    @property
    def id(self) -> EngineId:
        """The engine's identity, as the graphs name it."""
        return self.engine.id

    async def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in await self.engine.execute(EmbedRequest(tuple(texts)))]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text (blocks)."""
        return self.runtime.run(self._embed(texts))

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, from any event loop."""
        return await self.runtime.arun(self._embed(texts))


class IndexClient:
    """Search hits for a query text: its embedding, then a search of a shared vector index engine."""

    def __init__(self, embedding: EmbeddingClient, index: BatchingScheduler) -> None:
        self.embedding = embedding
        self.index = index

    @property
    def id(self) -> EngineId:
        """The index engine's identity, as the graphs name it."""
        return self.index.id

    async def _search(self, query: str, k: int) -> list[tuple[str, float]]:
        vectors = await self.embedding.engine.execute(EmbedRequest((query,)))
        [hits] = await self.index.execute(SearchRequest(tuple(vectors), k))
        return hits

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (id, score) hits of ``query`` (blocks)."""
        return self.embedding.runtime.run(self._search(query, k))

    async def asearch(self, query: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (id, score) hits of ``query``, from any event loop."""
        return await self.embedding.runtime.arun(self._search(query, k))
