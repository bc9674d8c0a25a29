"""Which replica of an engine takes a request: the least loaded, counting what each has cached.

Load is the work routed to a replica and not yet done: requests for batch engines; queued tokens
for LLMs, the tokens still to generate plus the prompt tokens still to prefill, a prompt token
weighing ``prefill_weight`` of a generated one (prefill computes many tokens per forward pass,
decode one). A replica that holds a prompt's prefix in its prefix cache only has the rest to
prefill, so the cost of a request on a replica is its queued tokens plus the weighted prompt tokens
it would compute anew: a warmed prefix and its full prompt meet on one replica while loads are
close, and requests spread as soon as one replica's queue is longer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Collection, Sequence


class ReplicaLoads:
    """Work in flight per replica; ``pick`` chooses the cheapest (ties: the lowest index)."""

    def __init__(self, replicas: int) -> None:
        if replicas < 1:
            raise ValueError(f"an engine needs at least one replica, got {replicas}")
        self.loads = [0.0] * replicas

    def pick(self, extra: Sequence[float] | None = None) -> int:
        """The replica whose load plus ``extra[replica]`` (this request's own cost there) is least."""
        costs = [load + (extra[r] if extra else 0.0) for r, load in enumerate(self.loads)]
        return min(range(len(costs)), key=costs.__getitem__)

    def add(self, replica: int, amount: float) -> None:
        """Count ``amount`` of work as routed to ``replica``."""
        self.loads[replica] += amount

    def done(self, replica: int, amount: float) -> None:
        """Count ``amount`` of ``replica``'s work as finished."""
        self.loads[replica] = max(0.0, self.loads[replica] - amount)


class PrefixMemory:
    """The prompt prefixes each replica was sent lately, block by block, as vLLM's prefix cache
    keys them: a block's key chains the keys of every block before it, so equal keys mean equal
    prefixes. Only whole blocks are cached, so only whole blocks count."""

    def __init__(self, replicas: int, block_size: int = 32, remembered_blocks: int = 65536) -> None:
        self.block_size = block_size
        self._remembered = remembered_blocks
        self._blocks: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(replicas)]

    def _keys(self, token_ids: Sequence[int]) -> list[int]:
        keys, key = [], 0
        for start in range(0, len(token_ids) - self.block_size + 1, self.block_size):
            key = hash((key, tuple(token_ids[start:start + self.block_size])))
            keys.append(key)
        return keys

    def cached_tokens(self, replica: int, token_ids: Sequence[int]) -> int:
        """How many leading tokens of ``token_ids`` ``replica`` was sent lately (whole blocks)."""
        blocks = self._blocks[replica]
        cached = 0
        for key in self._keys(token_ids):
            if key not in blocks:
                break
            cached += self.block_size
        return cached

    def record(self, replica: int, token_ids: Sequence[int]) -> None:
        """Remember that ``replica`` was sent ``token_ids`` (oldest blocks are forgotten first)."""
        blocks = self._blocks[replica]
        for key in self._keys(token_ids):
            blocks[key] = None
            blocks.move_to_end(key)
        while len(blocks) > self._remembered:
            blocks.popitem(last=False)

    def forget(self, replica: int) -> None:
        """Forget everything ``replica`` was sent (its engine was replaced; its cache is empty)."""
        self._blocks[replica].clear()


class TokenRouter:
    """Routes LLM requests over replicas by queued tokens, counting each replica's cached prefix."""

    def __init__(self, replicas: int, block_size: int = 32, prefill_weight: float = 0.1) -> None:
        self.loads = ReplicaLoads(replicas)
        self.prefixes = PrefixMemory(replicas, block_size)
        self.prefill_weight = prefill_weight

    def route(self, token_ids: Sequence[int], max_tokens: int,
              unavailable: Collection[int] = ()) -> tuple[int, float]:
        """The replica for a request and the load it adds there (give that back to ``done``).
        Replicas in ``unavailable`` (dead, being replaced) are passed over while another serves."""
        replicas = range(len(self.loads.loads))
        to_prefill = [self.prefill_weight * (len(token_ids) - self.prefixes.cached_tokens(r, token_ids)) for r in replicas]
        avoid = [float("inf") if r in unavailable and len(unavailable) < len(to_prefill) else 0.0 for r in replicas]
        replica = self.loads.pick([cost + penalty for cost, penalty in zip(to_prefill, avoid)])
        load = to_prefill[replica] + max_tokens
        self.loads.add(replica, load)
        self.prefixes.record(replica, token_ids)
        return replica, load

    def done(self, replica: int, load: float) -> None:
        """A request routed by ``route`` finished (whatever its outcome)."""
        self.loads.done(replica, load)
