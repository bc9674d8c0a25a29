"""Every subset of the passes gives the graph's own results, on zero-model engines."""

import asyncio
import itertools

import pytest

from teola.optimizer.cost_model import LinearCost
from teola.optimizer.passes import PASSES, optimize_plan
from teola.runtime.graph_scheduler import GraphScheduler

ITEM_HEAVY = {"emb": LinearCost(0.001, 0.05), "idx": LinearCost(0.001, 0.05)}


def _run(plans, engines, query="what is a with statement"):
    """Each plan's (outputs, trace), one after the other on one event loop (the engines' queues live on it)."""

    async def main():
        return [await GraphScheduler(plan, engines).run({"query_str": query}) for plan in plans]

    return asyncio.run(main())


@pytest.mark.parametrize("passes", [c for r in range(1, len(PASSES) + 1) for c in itertools.combinations(PASSES, r)],
                         ids="+".join)
def test_optimized_plans_return_what_the_unoptimized_plan_returns(primitives, engines, passes):
    (expected, _), (outputs, _) = _run([primitives, optimize_plan(primitives, passes, ITEM_HEAVY)], engines)
    assert "alpha" in expected["response"] and "gamma" in expected["response"] and "delta" not in expected["response"]
    assert outputs == expected


def test_all_passes_overlap_retrieval_with_expansion_and_stop_the_decode_early(primitives, engines):
    plan = optimize_plan(primitives, PASSES, ITEM_HEAVY)
    ((_, trace),) = _run([plan], engines)
    spans = {s.node: s for s in trace.spans}
    assert spans["retrieve.embed"].start < spans["expand.decode"].end
    assert spans["retrieve_gen.embed@0"].start < spans["expand.decode"].end
    assert spans["synthesize.prefill_prefix"].end <= spans["synthesize.prefill"].start
    # the decode stopped after the third query's line, not at the end of its five lines
    assert engines["llm"].streamed_chars == len("alpha\n\nbeta\ngamma\n")
    assert engines["llm"].warmed == ["answer:what is a with statement|"]


def test_unknown_pass_names_are_refused(primitives):
    with pytest.raises(ValueError, match="unknown passes \\['fuse_everything'\\]; choose from"):
        optimize_plan(primitives, ["fuse_everything"])
