"""Engine profiling: latency against batch size, fitted as ``fixed + per_item * n``.

Stage decomposition sizes sub-batches from these fits. An engine is profiled once, the first time
an optimized plan needs it, on its own sample request; the median of a few runs per batch size
keeps one noisy run from deciding.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from teola.optimizer.cost_model import LinearCost
from teola.runtime.engines.base import BatchEngine

BATCH_SIZES = (1, 2, 4, 8)


async def profile_engine(engine: BatchEngine, repeats: int = 3) -> LinearCost | None:
    """The engine's fitted cost, or None if it offers no sample request."""
    sample = engine.sample_request()
    if sample is None:
        return None
    await engine.run_batch([sample])  # first call pays one-off warm-up costs
    medians = []
    for size in BATCH_SIZES:
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            await engine.run_batch([sample] * size)
            runs.append(time.perf_counter() - start)
        medians.append(statistics.median(runs))
    per_item, fixed = np.polyfit(BATCH_SIZES, medians, 1)
    return LinearCost(fixed=max(float(fixed), 0.0), per_item=max(float(per_item), 0.0))
