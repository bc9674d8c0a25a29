from teola.optimizer.ir import Op, QueryInput, Ref
from teola.optimizer.passes.split_prefill import split_prefill


def test_the_prompt_prefix_is_prefilled_from_the_query_alone(primitives):
    split = split_prefill(primitives)
    assert split["synthesize.prompt_prefix"].inputs == {"query": QueryInput("query_str")}
    assert split["synthesize.prefill_prefix"].meta.warm is True
    assert split["synthesize.prefill_prefix"].after == ()
    assert split["synthesize.prefill"].inputs["prefix"] == Ref("synthesize.prefill_prefix", "tokens")
    # the expansion prompt has no late part: nothing to split there
    assert "expand.prompt_prefix" not in split
    assert sum(n.op is Op.PREFILL for n in split) == sum(n.op is Op.PREFILL for n in primitives) + 1
