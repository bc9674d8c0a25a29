from teola.optimizer.ir import Graph, Node, Op, QueryInput
from teola.optimizer.ops import CALLABLE, FnArgs
from teola.optimizer.passes.prune_dependencies import prune_dependencies


def test_pruning_drops_module_order_where_no_data_flows(primitives):
    pruned = prune_dependencies(primitives)
    assert any(n.after for n in primitives)
    assert not any(n.after for n in pruned)
    # the original query's retrieval no longer waits for query expansion
    assert "expand" in primitives.to_networkx().pred["retrieve.embed"]
    assert "expand" not in pruned.to_networkx().pred["retrieve.embed"]


def test_pruning_keeps_the_order_of_opaque_calls_and_leaves_its_input_alone(primitives):
    g = Graph()
    q = QueryInput("query_str")
    g.add(Node("write", Op.CALL, {"q": q}, ("out",), FnArgs(print), CALLABLE))
    g.add(Node("read", Op.CALL, {"q": q}, ("out",), FnArgs(print), CALLABLE, after=("write",)))
    g.add(Node("pure", Op.CALL, {"q": q}, ("out",), FnArgs(print, pure=True), CALLABLE, after=("read",)))
    before = str(g)
    pruned = prune_dependencies(g)
    assert pruned["read"].after == ("write",)
    assert pruned["pure"].after == ()
    assert str(g) == before
