import pytest

from teola.optimizer.ir import Graph, GraphError, ModuleKind, Node, Op, QueryInput, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.ops import EngineId, EngineKind, FnArgs, GenerateArgs, PrefixSpec
from teola.optimizer.passes.split_prefill import split_prefill
from teola.optimizer.stream_output import stream_output, stream_routes
from teola.optimizer.values import SKIPPED, Sampling


def _answer_plan() -> Graph:
    """question -> generate (with a prefix known from the question) -> a parse of the text."""
    g = Graph()
    g.add(Node("retrieve", ModuleKind.CALL, {"q": QueryInput("query_str")}, ("docs",), FnArgs(lambda q: q)))
    g.add(Node("answer.llm", ModuleKind.GENERATE, {"q": QueryInput("query_str"), "docs": Ref("retrieve", "docs")},
               ("text",), GenerateArgs(EngineId(EngineKind.LLM, "llm"), Sampling(max_tokens=8), lambda q, docs: None,
                                       PrefixSpec(lambda q: None, ("q",)))))
    g.add(Node("answer", ModuleKind.CALL, {"text": Ref("answer.llm", "text")}, ("output",), FnArgs(str.strip)))
    g.set_output("output", Ref("answer", "output"))
    return split_prefill(lower(g))


def test_the_answer_streams_from_its_decode_and_what_finished_it_is_dropped():
    plan = _answer_plan()
    streamed = stream_output(plan, "answer.llm", "output")
    assert streamed.outputs == {"output": Ref("answer.llm", "text")}
    assert streamed["answer.llm"].meta.stream is True
    assert "answer" not in streamed and "answer" in plan  # the original plan is untouched
    assert plan["answer.llm"].meta.stream is False
    assert {"retrieve", "answer.llm.prefill_prefix", "answer.llm.prefill"} <= {n.name for n in streamed}


def test_only_a_decode_of_the_plan_can_stream_the_answer():
    plan = _answer_plan()
    with pytest.raises(GraphError, match="not a decode"):
        stream_output(plan, "retrieve", "output")
    with pytest.raises(GraphError, match="no output 'answer'"):
        stream_output(plan, "answer.llm", "answer")


def _first_ran(**routes):
    return next(value for value in routes.values() if value is not SKIPPED)


def _routed_plan() -> Graph:
    """A gate picks one of two routes: an LLM call, or a call; ``picked`` takes the one that ran."""
    g = Graph()
    g.add(Node("gate", ModuleKind.CALL, {"q": QueryInput("query_str")}, ("llm", "plain"), FnArgs(lambda q: None)))
    g.add(Node("route.llm", ModuleKind.GENERATE, {"q": Ref("gate", "llm")}, ("text",),
               GenerateArgs(EngineId(EngineKind.LLM, "llm"), Sampling(max_tokens=8), lambda q: None)))
    g.add(Node("route", ModuleKind.CALL, {"text": Ref("route.llm", "text")}, ("output",), FnArgs(str.strip)))
    g.add(Node("plain", ModuleKind.CALL, {"q": Ref("gate", "plain")}, ("output",), FnArgs(str)))
    g.add(Node("picked", ModuleKind.CALL, {"route0": Ref("route", "output"), "route1": Ref("plain", "output")},
               ("output",), FnArgs(_first_ran, runs_on_skipped=("route0", "route1"))))
    g.set_output("output", Ref("picked", "output"))
    return lower(g)


def test_the_routes_answer_streams_from_the_decode_of_the_route_that_ran_and_nothing_is_dropped():
    plan = _routed_plan()
    streamed = stream_routes(plan, "picked", {"route0": "route.llm"}, "output")
    answer = streamed[streamed.outputs["output"].node]
    assert answer.inputs == {"route0": Ref("route.llm", "text"), "route1": Ref("plain", "output")}
    assert answer.args.reads_streams == ("route0",) and answer.args.runs_on_skipped == ("route0", "route1")
    assert answer.args.fn is _first_ran and answer.engine == plan["picked"].engine  # it picks as ``picked`` does
    assert streamed["route.llm"].meta.stream is True and plan["route.llm"].meta.stream is False
    assert {n.name for n in plan} <= {n.name for n in streamed}  # the finishing nodes run on, for what reads them


def test_a_routes_decode_that_more_than_framework_callables_read_does_not_stream():
    plan = _routed_plan()
    plan.add(Node("reuse", Op.PREFILL, {"prompt": Ref("route.llm", "text")}, ("state",),
                  plan["route.llm.prefill"].args, plan["route.llm.prefill"].engine))
    streamed = stream_routes(plan, "picked", {"route0": "route.llm"}, "output")
    assert streamed["route.llm"].meta.stream is False
    assert streamed[streamed.outputs["output"].node].inputs["route0"] == Ref("route", "output")
