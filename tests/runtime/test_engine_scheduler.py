"""Cross-query batching and failure isolation of the batching scheduler, on a counting engine."""

import asyncio

import pytest

from teola.optimizer.ops import EngineId, EngineKind
from teola.optimizer.values import Prompt, Sampling
from teola.runtime.engine_scheduler import BatchingScheduler, LLMScheduler
from teola.runtime.engines.base import BatchEngine, EngineCapabilities
from teola.runtime.requests import EmbedRequest, GenerateRequest, SearchRequest, TokenizeRequest, WarmPrefixRequest

UPPER = EngineId(EngineKind.EMBEDDING, "upper")
LLM = EngineId(EngineKind.LLM, "llm")


class UpperEngine(BatchEngine):
    """Upper-cases strings; fails a batch holding a non-string, like a real model would."""

    capabilities = EngineCapabilities(max_batch=4)

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list] = []

    async def run_batch(self, requests):
        self.batches.append(list(requests))
        await asyncio.sleep(0.01)
        return [r.upper() for r in requests]


async def _submit_all(scheduler, texts, priorities=None):
    priorities = priorities or [(0, 0)] * len(texts)
    results = await asyncio.gather(*(scheduler.execute(EmbedRequest((t,), priority=p)) for t, p in zip(texts, priorities)),
                                   return_exceptions=True)
    return [r if isinstance(r, BaseException) else r[0] for r in results]


def test_concurrent_requests_share_batches_capped_at_max_batch():
    engine = UpperEngine()
    scheduler = BatchingScheduler(UPPER, engine, EmbedRequest)
    results = asyncio.run(_submit_all(scheduler, [f"q{i}" for i in range(10)]))
    assert results == [f"Q{i}" for i in range(10)]
    assert scheduler.batches_sent == len(engine.batches) < 10 and scheduler.requests_sent == 10
    assert max(len(b) for b in engine.batches) <= 4


class TwoReplicaEngine(UpperEngine):
    """Runs two batches at once, as a backend with two replicas does; records how many overlap."""

    capabilities = EngineCapabilities(max_batch=2, concurrent_batches=2)

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most_running = 0

    async def run_batch(self, requests):
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            return await super().run_batch(requests)
        finally:
            self.running -= 1


def test_an_engine_with_two_replicas_gets_two_batches_at_once_and_no_more():
    engine = TwoReplicaEngine()
    scheduler = BatchingScheduler(UPPER, engine, EmbedRequest)
    results = asyncio.run(_submit_all(scheduler, [f"q{i}" for i in range(9)]))
    assert results == [f"Q{i}" for i in range(9)]
    assert engine.most_running == 2 and max(len(b) for b in engine.batches) <= 2


def test_a_bad_request_fails_alone_and_its_batch_mates_succeed():
    scheduler = BatchingScheduler(UPPER, UpperEngine(), EmbedRequest)
    results = asyncio.run(_submit_all(scheduler, ["a", 42, "c"]))
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], AttributeError)


def test_waiting_requests_are_served_by_priority():
    engine = UpperEngine()
    scheduler = BatchingScheduler(UPPER, engine, EmbedRequest)

    async def main():
        first = asyncio.ensure_future(scheduler.submit("first"))
        await asyncio.sleep(0.001)  # the engine is now busy with "first"; the rest queue up
        rest = [asyncio.ensure_future(scheduler.submit(t, p)) for t, p in
                [("low", (0, 5)), ("high", (0, -2)), ("mid", (0, 2)), ("high2", (0, -2)), ("low2", (1, -9))]]
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert engine.batches == [["first"], ["high", "high2", "mid", "low"], ["low2"]]


class CountingLLM:
    """Stands in for VLLMEngine: a prefix's tokens are its words' lengths; counts requests sent."""

    max_model_len = 5
    restarts = 0
    tokenizer_threads = 1

    def __init__(self):
        self.requests = []

    def tokenize_prefix(self, prefix):
        return [len(word) for word in prefix.split()]

    def tokenize(self, prompt):
        return [len(word) for word in prompt.text.split()]

    async def complete(self, token_ids, sampling, priority=0, request_id=None):
        self.requests.append((token_ids, sampling.max_tokens, priority, request_id))
        return "x"

    def close(self):
        pass


def test_a_prefix_is_warmed_once_and_then_left_to_the_prefix_cache():
    engine = CountingLLM()
    scheduler = LLMScheduler(LLM, engine)

    async def main():
        for i, prefix in enumerate(["system says hello", "system says hello", "another system prompt", "a b c d e f"]):
            await scheduler.execute(WarmPrefixRequest(prefix, id=f"warm{i}", priority=(0, -3)))

    asyncio.run(main())
    # the last prefix has 6 tokens, more than the context holds: not warmed (the full prompt fails as natively)
    assert engine.requests == [([6, 4, 5], 1, -3, "warm0"), ([7, 6, 6], 1, -3, "warm2")]


def test_a_generate_request_sends_each_item_named_after_the_request_and_tokenizes_off_the_loop():
    engine = CountingLLM()
    scheduler = LLMScheduler(LLM, engine)

    async def main():
        tokens = await scheduler.execute(TokenizeRequest((Prompt(text="one three"), Prompt(text="a b"))))
        texts = await scheduler.execute(GenerateRequest(tuple(tokens), Sampling(max_tokens=2), id="q1:d", priority=(1, -1)))
        return tokens, texts

    tokens, texts = asyncio.run(main())
    assert tokens == [[3, 5], [1, 1]] and texts == ["x", "x"]
    assert engine.requests == [([3, 5], 2, 10_000 - 1, "q1:d/0"), ([1, 1], 2, 10_000 - 1, "q1:d/1")]


def test_an_engine_refuses_a_request_of_another_kind_naming_both():
    scheduler = BatchingScheduler(UPPER, UpperEngine(), EmbedRequest)
    with pytest.raises(TypeError, match="the upper engine \\(embedding\\) does not run a SearchRequest"):
        asyncio.run(scheduler.execute(SearchRequest(([1.0],), 2)))
    with pytest.raises(TypeError, match="the llm engine \\(llm\\) does not run a EmbedRequest"):
        asyncio.run(LLMScheduler(LLM, CountingLLM()).execute(EmbedRequest(("a",))))
