"""GPU paths of the engines (faiss-gpu, vLLM on CUDA). They skip, saying why, where there is no GPU."""

import asyncio

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _cuda_gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


requires_gpu = pytest.mark.skipif(_cuda_gpus() == 0, reason="no CUDA GPU on this machine (CI and dev boxes are CPU-only)")


@requires_gpu
def test_faiss_gpu_search_matches_the_cpu_index():
    faiss = pytest.importorskip("faiss")
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss here is the CPU build: pip install faiss-gpu")
    from teola.runtime.engines.vector_index import FaissIndexEngine

    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(1000, 64)).astype(np.float32)
    engine = FaissIndexEngine.from_vectors([str(i) for i in range(1000)], matrix)
    assert "Gpu" in type(engine._index).__name__
    query = rng.normal(size=64).astype(np.float32)
    (hits,) = asyncio.run(engine.run_batch([(query.tolist(), 5)]))
    sims = matrix @ query / np.linalg.norm(matrix, axis=1)
    assert [h[0] for h in hits] == [str(i) for i in np.argsort(-sims)[:5]]


@requires_gpu
def test_vllm_on_the_gpu_answers_greedily(runtime):
    from teola.optimizer.values import ChatMessage, Prompt, Sampling

    from teola.runtime.clients import LLMClient

    client = LLMClient(runtime, runtime.llm())
    prompt = Prompt(messages=(ChatMessage("user", "What is the capital of France?"),))
    answers = [client.text(prompt, Sampling(max_tokens=16)) for _ in range(3)]
    assert answers[1] == answers[2]  # both find the prompt in the prefix cache; the first ran cold
    assert "Paris" in answers[1]
