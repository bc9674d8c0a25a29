"""Vector index engine: faiss, moved to the GPU where faiss-gpu and a GPU are there."""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from teola.runtime.engines.base import BatchEngine, EngineCapabilities
from teola.runtime.errors import EngineUnavailableError

log = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise EngineUnavailableError("the vector index engine needs faiss: pip install faiss-cpu (or faiss-gpu)") from exc
    return faiss


class FaissIndexEngine(BatchEngine):
    """(vector, top_k) -> [(id, score), ...] best first, every query of a batch in one faiss search.

    Build it with ``from_vectors`` (cosine similarity over a copy of the vectors) or ``from_index``
    (an existing faiss index, searched as it is, so scores match its owner's metric).
    """

    capabilities = EngineCapabilities(max_batch=256)

    def __init__(self, index, ids: Sequence[str] | None) -> None:
        super().__init__()
        if ids is not None and index.ntotal != len(ids):
            raise ValueError(f"the faiss index holds {index.ntotal} vectors but {len(ids)} ids were given")
        self._cpu_index = index
        self._index = self._maybe_to_gpu(index)
        self._ids = list(ids) if ids is not None else None
        self._normalize_queries = False

    @staticmethod
    def _maybe_to_gpu(index):
        faiss = _faiss()
        if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            log.info("vector index on the GPU (faiss-gpu)")
            return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        return index

    @classmethod
    def from_vectors(cls, ids: Sequence[str], vectors: np.ndarray) -> "FaissIndexEngine":
        """An inner-product index over unit-normalized copies of ``vectors`` (cosine similarity)."""
        faiss = _faiss()
        matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if matrix.ndim != 2 or len(matrix) == 0:
            raise ValueError(f"expected a non-empty (n, d) matrix of vectors, got shape {matrix.shape}")
        faiss.normalize_L2(matrix)
        index = faiss.IndexFlatIP(matrix.shape[1])
        index.add(matrix)
        engine = cls(index, ids)
        engine._normalize_queries = True
        return engine

    @classmethod
    def from_index(cls, index) -> "FaissIndexEngine":
        """Search an existing faiss index in place; ids are positions as strings (as FaissVectorStore's).

        On a GPU machine the index is copied to the GPU once, and vectors added to the original
        afterwards are not seen: optimize the app again after adding to its index.
        """
        return cls(index, None)

    def __reduce__(self):
        """Pickles as the index's bytes, ids and query normalization (a faiss index does not pickle
        itself): how the Ray backend ships an index built here to the actors that serve it."""
        return _restore, (_faiss().serialize_index(self._cpu_index), self._ids, self._normalize_queries)

    def _id(self, position: int) -> str:
        return self._ids[position] if self._ids is not None else str(position)

    @property
    def dimension(self) -> int:
        """Vector width the index expects."""
        return int(self._index.d)

    def sample_request(self) -> tuple[list[float], int]:
        """A unit query vector and top-k 3."""
        return [1.0 / self.dimension**0.5] * self.dimension, 3

    def _search(self, requests: Sequence[tuple[Sequence[float], int]]) -> list[list[tuple[str, float]]]:
        queries = np.asarray([vector for vector, _ in requests], dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise ValueError(f"query vectors must have width {self.dimension}, got shape {queries.shape}")
        if self._normalize_queries:
            _faiss().normalize_L2(queries)
        k = min(max(top_k for _, top_k in requests), self._index.ntotal)
        scores, positions = self._index.search(queries, k)
        return [
            [(self._id(p), float(s)) for p, s in zip(positions[row, :top_k], scores[row, :top_k]) if p >= 0]
            for row, (_, top_k) in enumerate(requests)
        ]

    async def run_batch(self, requests: Sequence[tuple[Sequence[float], int]]) -> list[list[tuple[str, float]]]:
        """Search a batch of (vector, top_k) queries at once."""
        return await self._on_worker(self._search, requests)


def _restore(index_bytes: np.ndarray, ids: list[str] | None, normalize_queries: bool) -> FaissIndexEngine:
    engine = FaissIndexEngine(_faiss().deserialize_index(index_bytes), ids)
    engine._normalize_queries = normalize_queries
    return engine


class FunctionSearchEngine(BatchEngine):
    """A search engine around the user's own vector store: ``search(vector, top_k) -> hits`` (the
    store's own search by vector), each request of a batch in turn on a worker thread."""

    capabilities = EngineCapabilities(max_batch=64)

    def __init__(self, search: Callable[[Sequence[float], int], list]) -> None:
        super().__init__()
        self._search = search

    async def run_batch(self, requests: Sequence[tuple[Sequence[float], int]]) -> list[list]:
        """The store's hits for each (vector, top_k)."""
        return await self._on_worker(lambda: [self._search(list(vector), k) for vector, k in requests])
