"""Clients of the shared engines: what framework model classes backed by them send, as typed requests.

A ``TeolaLLM`` or ``TeolaEmbeddings`` called natively sends its engine the same ``TokenizeRequest``,
``GenerateRequest``, ``EmbedRequest`` and ``SearchRequest`` a primitive of an optimized graph sends,
so native calls and optimized queries batch together on one engine. Each client holds the runtime
it was given: sync callers block on its loop, async callers await it from their own loop, and
code already on the runtime's loop awaits ``generate``, ``stream``, ``vectors`` and ``hits``.
Requests carry the caller's ``request_priority()`` (taken in the caller's context, before the work
moves to the runtime's loop), so a graph node's work is ordered as the node's adapter ranked it.
"""

from __future__ import annotations

from typing import AsyncIterator, Iterator, Sequence

from teola.optimizer.ops import EngineId
from teola.optimizer.values import Prompt, Sampling
from teola.runtime.engine_scheduler import BatchingScheduler, EngineScheduler
from teola.runtime.query_priority import request_priority
from teola.runtime.requests import EmbedRequest, GenerateRequest, Priority, SearchRequest, TokenizeRequest
from teola.runtime.runtime import Runtime


class EngineClient:
    """A client of one shared engine, on the runtime that serves it."""

    def __init__(self, runtime: Runtime, engine: EngineScheduler) -> None:
        self.runtime = runtime
        self.engine = engine

    @property
    def id(self) -> EngineId:
        """The engine's identity, as the graphs name it."""
        return self.engine.id


class LLMClient(EngineClient):
    """Text and text deltas for prompts, from a shared LLM engine."""

    async def _request(self, prompt: Prompt, sampling: Sampling, priority: Priority) -> GenerateRequest:
        [token_ids] = await self.engine.execute(TokenizeRequest((prompt,), priority=priority))
        return GenerateRequest((token_ids,), sampling, priority=priority)

    async def generate(self, prompt: Prompt, sampling: Sampling, priority: Priority = (0, 0)) -> str:
        """The whole generated text, on the runtime's loop."""
        [text] = await self.engine.execute(await self._request(prompt, sampling, priority))
        return text

    async def stream(self, prompt: Prompt, sampling: Sampling, priority: Priority = (0, 0)) -> AsyncIterator[str]:
        """Text deltas, on the runtime's loop."""
        async for delta in self.engine.stream(await self._request(prompt, sampling, priority)):
            yield delta

    def text(self, prompt: Prompt, sampling: Sampling) -> str:
        """The whole generated text (blocks)."""
        return self.runtime.run(self.generate(prompt, sampling, request_priority()))

    async def atext(self, prompt: Prompt, sampling: Sampling) -> str:
        """The whole generated text, from any event loop."""
        return await self.runtime.arun(self.generate(prompt, sampling, request_priority()))

    def deltas(self, prompt: Prompt, sampling: Sampling) -> Iterator[str]:
        """Text deltas as the engine produces them; closing the iterator aborts the request."""
        return self.runtime.iterate(self.stream(prompt, sampling, request_priority()))

    def adeltas(self, prompt: Prompt, sampling: Sampling) -> AsyncIterator[str]:
        """Text deltas on the caller's event loop; closing the iterator aborts the request."""
        return self.runtime.aiterate(self.stream(prompt, sampling, request_priority()))


class EmbeddingClient(EngineClient):
    """Vectors for texts, from a shared embedding engine (batched with every query in flight)."""

    async def vectors(self, texts: Sequence[str], priority: Priority = (0, 0)) -> list[list[float]]:
        """One vector per text, on the runtime's loop."""
        vectors = await self.engine.execute(EmbedRequest(tuple(texts), priority=priority))
        return [list(map(float, v)) for v in vectors]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text (blocks)."""
        return self.runtime.run(self.vectors(texts, request_priority()))

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, from any event loop."""
        return await self.runtime.arun(self.vectors(texts, request_priority()))


class IndexClient(EngineClient):
    """Search hits for a query text: its embedding (by ``embedding``), then a search of a shared index engine."""

    def __init__(self, embedding: EmbeddingClient, index: BatchingScheduler) -> None:
        super().__init__(embedding.runtime, index)
        self.embedding = embedding

    async def hits(self, query: str, k: int, priority: Priority = (0, 0)) -> list[tuple[str, float]]:
        """The ``k`` best hits of ``query``, on the runtime's loop."""
        vectors = await self.embedding.engine.execute(EmbedRequest((query,), priority=priority))
        [hits] = await self.engine.execute(SearchRequest(tuple(vectors), k, priority=priority))
        return hits

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (id, score) hits of ``query`` (blocks)."""
        return self.runtime.run(self.hits(query, k, request_priority()))

    async def asearch(self, query: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (id, score) hits of ``query``, from any event loop."""
        return await self.runtime.arun(self.hits(query, k, request_priority()))
