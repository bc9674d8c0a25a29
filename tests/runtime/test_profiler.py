import asyncio
import time

from teola.runtime.engines.base import BatchEngine
from teola.runtime.profiler import profile_engine


class CostlyEngine(BatchEngine):
    """Takes 20 ms a batch plus 10 ms an item (blocking, on its worker thread, like a model)."""

    def sample_request(self):
        return "x"

    async def run_batch(self, requests):
        return await self._on_worker(lambda: time.sleep(0.02 + 0.01 * len(requests)) or list(requests))


class Unprofiled(BatchEngine):
    async def run_batch(self, requests):
        return list(requests)


def test_the_fit_recovers_fixed_and_per_item_costs():
    engine = CostlyEngine()
    cost = asyncio.run(profile_engine(engine, repeats=1))
    engine.close()
    assert 0.015 < cost.fixed < 0.035 and 0.008 < cost.per_item < 0.014


def test_an_engine_without_a_sample_request_is_not_profiled():
    assert asyncio.run(profile_engine(Unprofiled())) is None
