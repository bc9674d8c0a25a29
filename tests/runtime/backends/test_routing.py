"""Replica routing: least loaded by queued work, an LLM replica's cached prefix counted."""

import pytest

from teola.runtime.backends.routing import PrefixMemory, ReplicaLoads, TokenRouter


def test_the_least_loaded_replica_is_picked_and_loads_are_given_back():
    loads = ReplicaLoads(3)
    assert loads.pick() == 0  # a tie goes to the lowest index
    loads.add(0, 5)
    loads.add(1, 2)
    assert loads.pick() == 2
    loads.add(2, 3)
    assert loads.pick() == 1
    assert loads.pick([0, 4, 0]) == 2  # 2 + 4 on replica 1 costs more than 3 on replica 2
    loads.done(0, 5)
    assert loads.pick() == 0 and loads.loads == [0.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="at least one replica"):
        ReplicaLoads(0)


def test_prefix_memory_counts_whole_shared_blocks_only():
    memory = PrefixMemory(2, block_size=4)
    memory.record(0, list(range(10)))  # blocks [0..3], [4..7]; the last two tokens are no whole block
    assert memory.cached_tokens(0, list(range(12))) == 8
    assert memory.cached_tokens(0, [0, 1, 2, 3, 9, 9, 9, 9]) == 4  # first block shared, second differs
    assert memory.cached_tokens(0, [9, 1, 2, 3, 4, 5, 6, 7]) == 0  # a later block counts only after equal ones
    assert memory.cached_tokens(1, list(range(12))) == 0
    memory.forget(0)
    assert memory.cached_tokens(0, list(range(12))) == 0


def test_prefix_memory_forgets_the_oldest_blocks_first():
    memory = PrefixMemory(1, block_size=2, remembered_blocks=2)
    memory.record(0, [1, 1, 2, 2])
    memory.record(0, [3, 3])
    assert memory.cached_tokens(0, [3, 3]) == 2 and memory.cached_tokens(0, [1, 1]) == 0


def test_a_full_prompt_follows_its_warmed_prefix_while_loads_are_close():
    router = TokenRouter(2, block_size=4, prefill_weight=0.5)
    prefix = list(range(16))
    warm, warm_load = router.route(prefix, max_tokens=1)
    assert warm == 0 and warm_load == 0.5 * 16 + 1
    router.done(warm, warm_load)
    other, other_load = router.route([99] * 8, max_tokens=4)  # unrelated work lands on replica 0 (a tie)
    assert other == 0 and other_load == 0.5 * 8 + 4
    # replica 0 has 8 queued but the 16-token prefix cached: 8 + 0.5 * 4 new < 0 + 0.5 * 20 new
    full, full_load = router.route(prefix + [7, 7, 7, 7], max_tokens=8)
    assert full == 0 and full_load == 0.5 * 4 + 8


def test_requests_spread_over_replicas_as_soon_as_one_queue_is_longer():
    router = TokenRouter(2, block_size=4, prefill_weight=0.5)
    shared = list(range(8))
    first, _ = router.route(shared + [1] * 4, max_tokens=100)
    second, _ = router.route(shared + [2] * 4, max_tokens=100)
    assert first == 0 and second == 1  # 100 queued tokens outweigh 8 cached prefix tokens


def test_an_unavailable_replica_is_passed_over_unless_none_other_serves():
    router = TokenRouter(2, block_size=4)
    assert router.route([1] * 8, 4, unavailable={0})[0] == 1
    assert router.route([1] * 8, 4, unavailable={0, 1})[0] in (0, 1)
