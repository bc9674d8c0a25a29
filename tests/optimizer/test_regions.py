"""Regions in the IR: declared, checked by lint, kept by edits and lowering (pure graph logic)."""

from dataclasses import replace

import pytest

from teola.optimizer.cost_model import LinearCost
from teola.optimizer.ir import Graph, GraphError, ModuleKind, Node, Op, QueryInput, Ref, Region
from teola.optimizer.lowering import lower
from teola.optimizer.passes.decompose_stages import decompose_stages
from teola.optimizer.ops import CALLABLE, EngineId, EngineKind, FnArgs, GenerateArgs
from teola.optimizer.regions import RegionObserver
from teola.optimizer.stream_output import stream_output
from teola.optimizer.values import Prompt, Sampling

from .passes.conftest import advanced_rag_modules

LLM = EngineId(EngineKind.LLM, "llm")


class Silent(RegionObserver):
    def start(self, parent, inputs, query):
        return None

    def end(self, handle, outputs):
        return None

    def fail(self, handle, error):
        return None


def _module_graph(gen_in: str | None = None, use_in: str | None = None) -> Graph:
    """query -> generate (a list, parsed) -> call; a region over the call's run, the model's inside it;
    ``gen_in``, ``use_in``: the regions the modules' own code runs in."""
    g = Graph()
    g.add(Node("gen", ModuleKind.GENERATE, {"q": QueryInput("query_str")}, ("items",),
               GenerateArgs(LLM, Sampling(), lambda q: Prompt(text=q), parse=str.splitlines, max_items=2), region=gen_in))
    g.add(Node("use", ModuleKind.CALL, {"items": Ref("gen", "items")}, ("out",), FnArgs(len, "count"), region=use_in))
    g.set_output("out", Ref("use", "out"))
    g.add_region(Region("chain", {"value": QueryInput("query_str")}, {"value": Ref("use", "out")}, Silent()))
    g.add_region(Region("model", {"value": QueryInput("query_str")}, {"text": Ref("gen", "text")}, Silent(), "chain"))
    return g


def test_a_region_reads_its_modules_raw_text_where_lowering_produces_it():
    primitives = lower(_module_graph())
    assert primitives.regions["model"].outputs["text"] == Ref("gen.decode", "text")
    assert primitives.regions["chain"].outputs["value"] == Ref("use", "out")
    assert primitives.copy().regions == primitives.regions


def test_lint_names_a_region_that_reads_nothing_real_or_hangs_under_nobody():
    g = _module_graph()
    g.add_region(Region("bad", {"value": Ref("nope", "x")}, {}, Silent()))
    with pytest.raises(GraphError, match="no node 'nope'"):
        g.lint(ModuleKind)
    g = lower(_module_graph())
    g.regions["bad"] = Region("bad", {}, {"value": Ref("use", "nothing")}, Silent())
    with pytest.raises(GraphError, match="region 'bad'"):
        g.lint(Op)
    with pytest.raises(GraphError, match="not declared"):
        Graph().add_region(Region("child", {}, {}, Silent(), parent="missing"))
    g = _module_graph()
    g.add_region(Region("odd", {}, {"text": Ref("use", "text")}, Silent()))
    with pytest.raises(GraphError, match="no primitive of module 'use' produces"):
        lower(g)


def test_a_node_a_region_reads_is_not_erased_or_replaced_without_its_output():
    g = lower(_module_graph())
    g.set_output("out", Ref("gen", "items"))  # nothing but the region reads "use" now
    with pytest.raises(GraphError, match="region chain"):
        g.erase("use")
    with pytest.raises(GraphError, match="'out'"):
        g.replace(Node("use", Op.CALL, {"items": Ref("gen", "items")}, ("other",), FnArgs(len, "count"), CALLABLE))


def test_streaming_an_answer_keeps_the_regions_on_its_text_and_drops_those_on_what_it_no_longer_computes():
    plan = lower(_module_graph())
    plan.add_region(Region("prompt", {"value": QueryInput("query_str")}, {"p": Ref("gen.prompt", "prompt")}, Silent()))
    streamed = stream_output(plan, "gen.decode", "out")
    assert set(streamed.regions) == {"prompt"}  # "chain" read the call now dropped; "model", its child, goes too
    streamed.lint(Op)
    answer = stream_output(lower(_answer_graph()), "gen", "out")
    assert set(answer.regions) == {"model", "inner"}  # on the streamed text: they end with the stream
    answer.lint(Op)


def _answer_graph() -> Graph:
    g = Graph()
    g.add(Node("gen", ModuleKind.GENERATE, {"q": QueryInput("query_str")}, ("text",),
               GenerateArgs(LLM, Sampling(), lambda q: Prompt(text=q))))
    g.set_output("out", Ref("gen", "text"))
    g.add_region(Region("model", {"value": QueryInput("query_str")}, {"text": Ref("gen", "text")}, Silent()))
    g.add_region(Region("inner", {"value": QueryInput("query_str")}, {}, Silent(), "model"))
    return g


def test_a_region_on_one_item_reads_it_from_its_sub_batch_and_a_member_read_whole_is_joined():
    modules = advanced_rag_modules()
    for k in range(2):  # the k-th generated query's embedding span, as the LlamaIndex adapter declares it
        modules.add_region(Region(f"item{k}", {"query": Ref("expand", "queries", (k, k + 1))},
                                  {"vector": Ref("retrieve_gen", "vector", (k, k + 1))}, Silent()))
    modules.add_region(Region("whole", {}, {"hits": Ref("retrieve_gen", "hits")}, Silent()))
    primitives = lower(modules)
    assert primitives.regions["item1"].outputs["vector"] == Ref("retrieve_gen.embed", "vector", (1, 2))
    split = decompose_stages(primitives, {"emb": LinearCost(0.001, 0.05), "idx": LinearCost(0.001, 0.05)})
    assert split.regions["item0"].outputs["vector"] == Ref("retrieve_gen.embed@0", "vector", (0, 1))
    assert split.regions["item1"].outputs["vector"] == Ref("retrieve_gen.embed@1", "vector", (0, 1))
    assert split.regions["item1"].inputs["query"] == Ref("expand", "queries", (1, 2))
    assert "retrieve_gen.embed" not in split  # no region reads it whole: gone, as without regions
    assert split["retrieve_gen.search"].op is Op.FUSE  # read whole by a region: joined like the chain's end
    assert split.regions["whole"].outputs["hits"] == Ref("retrieve_gen.search", "hits")


def test_work_placed_in_a_region_keeps_its_place_through_lowering_on_the_primitive_that_runs_it():
    primitives = lower(_module_graph(gen_in="chain", use_in="model"))
    assert primitives["use"].region == "model"
    assert primitives["gen"].region == "chain"  # the parse: the framework's callable
    assert {primitives[n].region for n in ("gen.prompt", "gen.prefill", "gen.decode")} == {None}  # engine work


def test_lint_refuses_work_placed_in_a_region_that_waits_for_it_or_in_none():
    g = _module_graph(gen_in="after-use")
    g.add_region(Region("after-use", {"value": Ref("use", "out")}, {}, Silent()))  # starts on what gen feeds
    with pytest.raises(GraphError, match="needs the node"):
        g.lint(ModuleKind)
    with pytest.raises(GraphError, match="not declared"):
        _module_graph(gen_in="nowhere").lint(ModuleKind)
    g = _module_graph(gen_in="model")
    g.regions["model"] = Region("model", {"prompt": Ref("gen", "prompt")}, {}, Silent(), "chain")
    g.lint(ModuleKind)  # a region on an earlier step of the module's own chain
    lower(g).lint(Op)


def test_inline_prefixes_nodes_and_regions_moves_the_query_input_and_hangs_top_regions_under_the_one_given():
    outer = Graph()
    outer.add(Node("gate", ModuleKind.CALL, {"q": QueryInput("query_str")}, ("q",), FnArgs(str.strip, "gate")))
    outer.add_region(Region("router", {"value": QueryInput("query_str")}, {}, Silent()))
    sub = _module_graph(use_in="model")
    sub.replace(replace(sub["use"], after=("gen",)))
    outputs = outer.inline(sub, "route0/", {"query_str": Ref("gate", "q")}, region="router")
    assert outputs == {"out": Ref("route0/use", "out")}
    assert outer["route0/gen"].inputs == {"q": Ref("gate", "q")}
    assert outer["route0/use"].inputs == {"items": Ref("route0/gen", "items")}
    assert outer["route0/use"].after == ("route0/gen",)
    assert (outer["route0/gen"].region, outer["route0/use"].region) == ("router", "route0/model")
    assert outer.regions["route0/chain"].parent == "router"
    assert outer.regions["route0/model"].parent == "route0/chain"
    assert outer.regions["route0/model"].outputs == {"text": Ref("route0/gen", "text")}
    outer.set_output("out", outputs["out"])
    outer.lint(ModuleKind)
    lower(outer).lint(Op)
    with pytest.raises(GraphError, match="already exists"):
        outer.inline(sub, "route0/", {"query_str": Ref("gate", "q")})
    with pytest.raises(GraphError, match="needs a source for the sub-graph's inputs \\['query_str'\\]"):
        outer.inline(sub, "route1/", {})
