import pytest

from teola.optimizer.cost_model import LinearCost, best_split_size, pipelined_latency
from teola.optimizer.ir import Op, Ref
from teola.optimizer.passes.decompose_stages import decompose_stages, find_batch_chains


def test_the_generated_queries_retrieval_is_one_bounded_chain(primitives):
    (chain,) = find_batch_chains(primitives)
    assert chain.source == Ref("expand", "queries")
    assert chain.members == ("retrieve_gen.embed", "retrieve_gen.search", "retrieve_gen")
    assert chain.max_items == 3


def test_split_size_follows_the_measured_costs():
    fixed_heavy = [LinearCost(fixed=0.05, per_item=0.001), LinearCost(fixed=0.01, per_item=0.0001)]
    item_heavy = [LinearCost(fixed=0.001, per_item=0.05), LinearCost(fixed=0.001, per_item=0.05)]
    assert best_split_size(3, fixed_heavy) == 3
    assert best_split_size(3, item_heavy) == 1
    # one sub-batch through two stages, plus two more steps of the slowest stage
    assert pipelined_latency(3, 1, item_heavy) == pytest.approx(2 * 0.051 + 2 * 0.051)


def test_decomposition_splits_only_where_it_pays(primitives):
    assert str(decompose_stages(primitives, {"emb": LinearCost(0.05, 0.001)})) == str(primitives)
    split = decompose_stages(primitives, {"emb": LinearCost(0.001, 0.05), "idx": LinearCost(0.001, 0.05)})
    assert [split[f"retrieve_gen.embed@{j}"].inputs["text"].items for j in range(3)] == [(0, 1), (1, 2), (2, 3)]
    assert split["retrieve_gen"].op is Op.FUSE  # the sub-batches join where the chain ended
    assert "retrieve_gen.embed" not in split

