import pytest

from teola.optimizer.ir import Graph, GraphError, ModuleKind, Node, Op, QueryInput, Ref


def _chain() -> Graph:
    g = Graph()
    g.add(Node("embed", Op.EMBED, {"text": QueryInput("query_str")}, ("vector",), "embedding"))
    g.add(Node("search", Op.SEARCH, {"vector": Ref("embed", "vector")}, ("hits",), "index", {"top_k": 2}))
    g.set_output("hits", Ref("search", "hits"))
    return g


def test_lint_accepts_a_well_formed_graph_and_orders_it():
    g = _chain()
    g.lint(Op)
    assert [n.name for n in g.topological_order()] == ["embed", "search"]
    assert "search:search(vector=embed.vector) @index" in str(g)


def test_lint_names_a_dangling_reference():
    g = _chain()
    g.replace(g["search"].with_inputs(vector=Ref("nope", "vector")))
    with pytest.raises(GraphError, match="no node 'nope'"):
        g.lint()


def test_lint_names_a_missing_output_and_unknown_query_input():
    g = _chain()
    g.replace(g["search"].with_inputs(vector=Ref("embed", "vec")))
    with pytest.raises(GraphError, match="outputs \\('vector',\\)"):
        g.lint()
    g = _chain()
    g.replace(g["embed"].with_inputs(text=QueryInput("question")))
    with pytest.raises(GraphError, match="query input 'question'"):
        g.lint()


def test_lint_rejects_cycles_mixed_levels_and_duplicate_names():
    g = _chain()
    g.replace(g["embed"].with_inputs(text=Ref("search", "hits")))
    with pytest.raises(GraphError, match="cycle"):
        g.lint()
    g = _chain()
    g.add(Node("synth", ModuleKind.SYNTHESIZE, {"q": QueryInput("query_str")}, ("response",)))
    with pytest.raises(GraphError, match="not a Op"):
        g.lint(Op)
    with pytest.raises(GraphError, match="already exists"):
        g.add(Node("embed", Op.EMBED, {}, ("vector",)))


def test_copy_is_independent():
    g = _chain()
    h = g.copy()
    h.remove("search")
    assert "search" in g and "search" not in h
