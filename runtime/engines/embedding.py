"""Embedding engine: sentence-transformers, on the GPU where there is one."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from teola.runtime.engines.base import BatchEngine, EngineCapabilities
from teola.runtime.errors import EngineUnavailableError
from teola.runtime.models import resolve_embedding


class SentenceTransformerEngine(BatchEngine):
    """Texts -> unit vectors with a sentence-transformers model; one batch per call."""

    capabilities = EngineCapabilities(max_batch=64)

    def __init__(self, model: str, device: str | None = None, normalize: bool = True) -> None:
        super().__init__()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EngineUnavailableError(
                "the embedding engine needs sentence-transformers: pip install 'teola[cpu]' (or 'teola[gpu]')"
            ) from exc
        self.model_name = model
        self._model = SentenceTransformer(resolve_embedding(model), device=device)
        self._normalize = normalize
        self.dimension = int(self._model.get_embedding_dimension())

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"the embedding engine takes strings, got {type(text).__name__}: {text!r:.80}")
        return self._model.encode(list(texts), batch_size=len(texts), normalize_embeddings=self._normalize,
                                  convert_to_numpy=True, show_progress_bar=False)

    def sample_request(self) -> str:
        """A question-sized sentence."""
        return "How does the with statement call the context manager's enter and exit methods?"

    async def run_batch(self, requests: Sequence[str]) -> list[list[float]]:
        """Embed a batch of texts."""
        vectors = await self._on_worker(self._encode, requests)
        return [row.astype(np.float32).tolist() for row in vectors]


class FunctionEmbeddingEngine(BatchEngine):
    """An embedding engine around the user's own model: ``embed_batch(texts) -> vectors`` (the
    model's own batch method, as its framework calls it), one batch of at most ``max_batch`` at a
    time on a worker thread. ``sample`` is a typical text, for profiling."""

    def __init__(self, embed_batch: Callable[[list[str]], Sequence[Sequence[float]]], sample: str,
                 max_batch: int = 64) -> None:
        super().__init__()
        self._embed_batch = embed_batch
        self._sample = sample
        self.capabilities = EngineCapabilities(max_batch=max_batch)

    def sample_request(self) -> str:
        return self._sample

    async def run_batch(self, requests: Sequence[str]) -> list[list[float]]:
        """Embed a batch of texts with the user's model."""
        return [list(v) for v in await self._on_worker(self._embed_batch, list(requests))]
