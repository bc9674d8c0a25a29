from teola.optimizer.ir import Graph, Node, Op, QueryInput, Ref
from teola.optimizer.ops import CALLABLE, FnArgs
from teola.runtime.critical_path import critical_path, isolated_latencies
from teola.runtime.graph_scheduler import PrimitiveSpan, QueryTrace


def test_the_floor_is_the_slowest_dependent_chain_not_the_sum():
    g = Graph()
    q = QueryInput("query_str")
    g.add(Node("fast", Op.CALL, {"q": q}, ("out",), FnArgs(str), CALLABLE))
    g.add(Node("slow", Op.CALL, {"q": q}, ("out",), FnArgs(str), CALLABLE))
    g.add(Node("join", Op.CALL, {"a": Ref("fast", "out"), "b": Ref("slow", "out")}, ("out",), FnArgs(str), CALLABLE))
    g.set_output("out", Ref("join", "out"))
    trace = QueryTrace([PrimitiveSpan("fast", "call", "c", 0.0, 0.1), PrimitiveSpan("slow", "call", "c", 0.1, 0.4),
                        PrimitiveSpan("join", "call", "c", 0.4, 0.5)])
    length, path = critical_path(g, isolated_latencies(trace))
    assert path == ["slow", "join"]
    assert abs(length - 0.4) < 1e-9
