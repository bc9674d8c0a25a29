import pytest

from teola.optimizer.ir import Graph, GraphError, ModuleKind, Node, QueryInput, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.ops import EngineId, EngineKind, FnArgs, GenerateArgs, PrefixSpec
from teola.optimizer.passes.split_prefill import split_prefill
from teola.optimizer.stream_output import stream_output
from teola.optimizer.values import Sampling


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
