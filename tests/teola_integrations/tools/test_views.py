"""The pictures: the graph after each pass and a query's timeline (pure drawing, no engines)."""

from matplotlib.collections import PolyCollection

from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.ops import EngineId, EngineKind, GenerateArgs, PrefixSpec, RetrieveArgs
from teola.optimizer.passes import PASSES, optimize_plan, plan_stages
from teola.optimizer.values import Sampling
from teola.runtime.graph_scheduler import PrimitiveSpan, QueryTrace
from teola_integrations.tools.views import stages_figure, timeline_figure


def _rag() -> Graph:
    g = Graph()
    g.add(Node("retrieve", ModuleKind.RETRIEVE, {"query": QueryInput("query_str")}, ("nodes",), RetrieveArgs(
        EngineId(EngineKind.EMBEDDING, "embedding"), EngineId(EngineKind.VECTOR_INDEX, "index"), 3,
        lambda hits, query: hits)))
    g.add(Node("answer", ModuleKind.GENERATE, {"q": QueryInput("query_str"), "nodes": Ref("retrieve", "nodes")},
               ("text",), GenerateArgs(EngineId(EngineKind.LLM, "llm"), Sampling(max_tokens=8), lambda q, nodes: None,
                                       PrefixSpec(lambda q: None, ("q",)))))
    g.set_output("answer", Ref("answer", "text"))
    return lower(g)


def test_stages_are_the_lowered_graph_then_each_pass_ending_in_the_plan():
    graph = _rag()
    stages = plan_stages(graph)
    assert [name for name, _ in stages] == ["lowered", *PASSES]
    assert stages[0][1] is graph
    assert {n.name for n in stages[-1][1]} == {n.name for n in optimize_plan(graph)}
    assert [name for name, _ in plan_stages(graph, ("split_prefill",))] == ["lowered", "split_prefill"]


def test_the_stages_figure_has_a_panel_per_stage_and_saves(tmp_path):
    stages = plan_stages(_rag(), ("prune", "split_prefill"))
    fig = stages_figure(stages)
    assert len(fig.axes) == 3
    assert "6 primitives" in fig.axes[0].get_title() and "8 primitives" in fig.axes[2].get_title()  # + prefix, warm prefill
    fig.savefig(tmp_path / "stages.png")
    assert (tmp_path / "stages.png").read_bytes()[:4] == b"\x89PNG"


def test_the_timeline_draws_a_bar_per_primitive_on_its_engine_row(tmp_path):
    trace = QueryTrace([PrimitiveSpan("retrieve.embed", "embed", "embedding", 0.0, 0.02),
                        PrimitiveSpan("answer.prefill", "prefill", "llm", 0.02, 0.05),
                        PrimitiveSpan("answer", "decode", "llm", 0.05, 0.4)], total=0.4)
    fig = timeline_figure({"native order": trace, "teola": trace})
    first = fig.axes[0]
    bars = [c for c in first.collections if isinstance(c, PolyCollection)]
    assert sum(len(c.get_paths()) for c in bars) == 3
    assert [t.get_text() for t in first.get_yticklabels()] == ["embedding", "llm"]
    assert first.get_title(loc="left") == "native order: 400 ms"
    fig.savefig(tmp_path / "timeline.png")
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"
