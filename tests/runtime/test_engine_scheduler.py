"""Cross-query batching and failure isolation of the batching scheduler, on a counting engine."""

import asyncio

from teola.optimizer.ir import Node, Op
from teola.runtime.engine_scheduler import BatchingScheduler, LLMScheduler, embed_payload
from teola.runtime.engines.base import BatchEngine, EngineCapabilities


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


def _embed_node() -> Node:
    return Node("embed", Op.EMBED, {}, ("vector",), "upper")


async def _submit_all(scheduler, texts, priorities=None):
    node = _embed_node()
    priorities = priorities or [(0, 0)] * len(texts)
    return await asyncio.gather(*(scheduler.execute(node, {"text": t}, p) for t, p in zip(texts, priorities)),
                                return_exceptions=True)


def test_concurrent_requests_share_batches_capped_at_max_batch():
    engine = UpperEngine()
    scheduler = BatchingScheduler("upper", engine, embed_payload)
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
    scheduler = BatchingScheduler("upper", engine, embed_payload)
    results = asyncio.run(_submit_all(scheduler, [f"q{i}" for i in range(9)]))
    assert results == [f"Q{i}" for i in range(9)]
    assert engine.most_running == 2 and max(len(b) for b in engine.batches) <= 2


def test_a_bad_request_fails_alone_and_its_batch_mates_succeed():
    scheduler = BatchingScheduler("upper", UpperEngine(), embed_payload)
    results = asyncio.run(_submit_all(scheduler, ["a", 42, "c"]))
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], AttributeError)


def test_waiting_requests_are_served_by_priority():
    engine = UpperEngine()
    scheduler = BatchingScheduler("upper", engine, embed_payload)

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

    def __init__(self):
        self.requests = []

    def tokenize_prefix(self, prefix):
        return [len(word) for word in prefix.split()]

    async def complete(self, token_ids, sampling, priority=0):
        self.requests.append((token_ids, sampling.max_tokens, priority))
        return "x"


def test_a_prefix_is_warmed_once_and_then_left_to_the_prefix_cache():
    engine = CountingLLM()
    scheduler = LLMScheduler("llm", engine)
    warm = Node("s.prefill_prefix", Op.PREFILL, {}, ("tokens",), "llm", {"warm": True})

    async def main():
        for prefix in ["system says hello", "system says hello", "another system prompt", "a b c d e f"]:
            await scheduler.execute(warm, {"prompt": prefix}, (0, -3))

    asyncio.run(main())
    # the last prefix has 6 tokens, more than the context holds: not warmed (the full prompt fails as natively)
    assert engine.requests == [([6, 4, 5], 1, -3), ([7, 6, 6], 1, -3)]
