"""Engine cost model: latency as a function of batch size, measured on the engines themselves.

The runtime profiles an engine (``teola.runtime.profiler``) and fits ``fixed + per_item * n``;
passes read these fits as plain data to choose how to split work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass(frozen=True)
class LinearCost:
    """Seconds to run a batch of ``n`` on one engine: ``fixed + per_item * n``."""

    fixed: float
    per_item: float

    def __call__(self, n: int) -> float:
        return self.fixed + self.per_item * n if n > 0 else 0.0


# Engine name -> fitted cost. Engines absent from a profile cost nothing (local work).
CostProfile = Mapping[str, LinearCost]


def pipelined_latency(n: int, size: int, stages: Sequence[LinearCost]) -> float:
    """Latency of ``n`` items through ``stages`` in sub-batches of ``size``: the first sub-batch
    through every stage, then one slowest-stage step for each further sub-batch."""
    chunks = math.ceil(n / size)
    per_chunk = [stage(min(size, n)) for stage in stages]
    return sum(per_chunk) + (chunks - 1) * max(per_chunk)


def best_split_size(n: int, stages: Sequence[LinearCost]) -> int:
    """The sub-batch size (1..n) with the lowest pipelined latency; ties go to the larger size."""
    return min(range(n, 0, -1), key=lambda size: pipelined_latency(n, size, stages))
