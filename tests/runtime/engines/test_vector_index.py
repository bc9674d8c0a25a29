import asyncio

import numpy as np
import pytest

from teola.runtime.engines.vector_index import FaissIndexEngine


def _cosine_top_k(matrix, query, k):
    sims = matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    order = np.argsort(-sims)[:k]
    return order, sims[order]


def test_batched_cosine_search_matches_brute_force():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(500, 16)).astype(np.float32)
    ids = [f"node{i}" for i in range(500)]
    engine = FaissIndexEngine.from_vectors(ids, matrix * rng.uniform(0.5, 3, size=(500, 1)).astype(np.float32))
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    results = asyncio.run(engine.run_batch([(q.tolist(), k) for q, k in zip(queries, [1, 3, 5, 7, 9])]))
    for q, k, hits in zip(queries, [1, 3, 5, 7, 9], results):
        order, sims = _cosine_top_k(matrix, q, k)
        assert [h[0] for h in hits] == [ids[i] for i in order]
        assert np.allclose([h[1] for h in hits], sims, atol=1e-5)


def test_searching_an_existing_index_in_place_returns_positions():
    import faiss

    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(50, 8)).astype(np.float32)
    index = faiss.IndexFlatL2(8)
    index.add(matrix)
    engine = FaissIndexEngine.from_index(index)
    (hits,) = asyncio.run(engine.run_batch([(matrix[7].tolist(), 2)]))
    assert hits[0] == ("7", pytest.approx(0.0, abs=1e-6))
    assert len(hits) == 2


def test_bad_input_is_named():
    engine = FaissIndexEngine.from_vectors(["a", "b"], np.eye(2, dtype=np.float32))
    with pytest.raises(ValueError, match="width 2"):
        asyncio.run(engine.run_batch([([1.0, 0.0, 0.0], 1)]))
    with pytest.raises(ValueError, match="non-empty"):
        FaissIndexEngine.from_vectors([], np.zeros((0, 2), dtype=np.float32))


def test_an_index_searched_in_place_sees_vectors_added_later():
    import faiss

    index = faiss.IndexFlatIP(2)
    index.add(np.asarray([[1.0, 0.0]], dtype=np.float32))
    engine = FaissIndexEngine.from_index(index)
    index.add(np.asarray([[0.0, 1.0]], dtype=np.float32))
    (hits,) = asyncio.run(engine.run_batch([([0.0, 1.0], 2)]))
    assert [h[0] for h in hits] == ["1", "0"]


def test_an_index_pickles_with_its_ids_and_metric_for_shipping_to_another_process():
    import pickle

    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(40, 8)).astype(np.float32) * 3
    engine = FaissIndexEngine.from_vectors([f"c{i}" for i in range(40)], matrix)
    copy = pickle.loads(pickle.dumps(engine))
    requests = [(q.tolist(), 4) for q in rng.normal(size=(3, 8)).astype(np.float32)]
    assert asyncio.run(copy.run_batch(requests)) == asyncio.run(engine.run_batch(requests))
