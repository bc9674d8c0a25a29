import pytest

from teola.optimizer.cost_model import LinearCost, best_split_size, pipelined_latency
from teola.optimizer.ir import Op, Ref, Region
from teola.optimizer.lowering import lower
from teola.optimizer.passes.decompose_stages import decompose_stages, find_batch_chains
from teola.optimizer.regions import RegionObserver

from .conftest import advanced_rag_modules


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


class _Silent(RegionObserver):
    def start(self, parent, inputs, query):
        return None

    def end(self, handle, outputs):
        return None

    def fail(self, handle, error):
        return None


def test_a_region_on_one_item_reads_it_from_its_sub_batch_and_a_member_read_whole_is_joined():
    modules = advanced_rag_modules()
    for k in range(2):  # the k-th generated query's embedding span, as the LlamaIndex adapter declares it
        modules.add_region(Region(f"item{k}", {"query": Ref("expand", "queries", (k, k + 1))},
                                  {"vector": Ref("retrieve_gen", "vector", (k, k + 1))}, _Silent()))
    modules.add_region(Region("whole", {}, {"hits": Ref("retrieve_gen", "hits")}, _Silent()))
    primitives = lower(modules)
    assert primitives.regions["item1"].outputs["vector"] == Ref("retrieve_gen.embed", "vector", (1, 2))
    split = decompose_stages(primitives, {"emb": LinearCost(0.001, 0.05), "idx": LinearCost(0.001, 0.05)})
    assert split.regions["item0"].outputs["vector"] == Ref("retrieve_gen.embed@0", "vector", (0, 1))
    assert split.regions["item1"].outputs["vector"] == Ref("retrieve_gen.embed@1", "vector", (0, 1))
    assert split.regions["item1"].inputs["query"] == Ref("expand", "queries", (1, 2))
    assert "retrieve_gen.embed" not in split  # no region reads it whole: gone, as without regions
    assert split["retrieve_gen.search"].op is Op.FUSE  # read whole by a region: joined like the chain's end
    assert split.regions["whole"].outputs["hits"] == Ref("retrieve_gen.search", "hits")
