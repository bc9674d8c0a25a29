import pytest

from teola.optimizer.ir import Graph, GraphError, ModuleKind, Node, Op, QueryInput, Ref
from teola.optimizer.ops import (CALLABLE, DecodeArgs, EmbedArgs, EngineId, EngineKind, FnArgs, Meta, ParseArgs,
                                 SearchArgs, StopAfter, SynthesizeArgs)
from teola.optimizer.values import Sampling

EMBEDDING = EngineId(EngineKind.EMBEDDING, "embedding")
INDEX = EngineId(EngineKind.VECTOR_INDEX, "index")
LLM = EngineId(EngineKind.LLM, "llm")


def _chain() -> Graph:
    g = Graph()
    g.add(Node("embed", Op.EMBED, {"text": QueryInput("query_str")}, ("vector",), EmbedArgs(), EMBEDDING))
    g.add(Node("search", Op.SEARCH, {"vector": Ref("embed", "vector")}, ("hits",), SearchArgs(2), INDEX))
    g.set_output("hits", Ref("search", "hits"))
    return g


def test_lint_accepts_a_well_formed_graph_and_orders_it():
    g = _chain()
    g.lint(Op)
    assert [n.name for n in g.topological_order()] == ["embed", "search"]
    assert "search:search(vector=embed.vector) @index" in str(g)


def test_lint_names_a_dangling_reference():
    g = _chain()
    g._nodes["search"] = g["search"].with_inputs(vector=Ref("nope", "vector"))
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
    g.add(Node("synth", ModuleKind.CALL, {"q": QueryInput("query_str")}, ("response",), FnArgs(str)))
    with pytest.raises(GraphError, match="not a Op"):
        g.lint(Op)
    with pytest.raises(GraphError, match="already exists"):
        g.add(Node("embed", Op.EMBED, {"text": QueryInput("query_str")}, ("vector",), EmbedArgs(), EMBEDDING))


def _linted(node: Node) -> None:
    g = Graph()
    g.add(node)
    g.set_output("out", Ref(node.name, node.outputs[0]))
    g.lint()


def test_lint_rejects_arguments_of_another_op():
    with pytest.raises(GraphError, match="search\\) takes SearchArgs, got EmbedArgs"):
        _linted(Node("search", Op.SEARCH, {"vector": QueryInput("query_str")}, ("hits",), EmbedArgs(), INDEX))


def test_lint_rejects_a_primitive_on_the_wrong_kind_of_engine_or_none():
    with pytest.raises(GraphError, match="runs on a vector_index engine, not EngineId\\(kind=<EngineKind.LLM"):
        _linted(Node("search", Op.SEARCH, {"vector": QueryInput("query_str")}, ("hits",), SearchArgs(2), LLM))
    with pytest.raises(GraphError, match="runs on a llm engine, not None"):
        _linted(Node("decode", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling())))
    with pytest.raises(GraphError, match="module 'answer' names its engines in its arguments"):
        _linted(Node("answer", ModuleKind.CALL, {"q": QueryInput("query_str")}, ("out",), FnArgs(str), CALLABLE))


def test_lint_rejects_inputs_the_op_does_not_read_and_missing_ones():
    with pytest.raises(GraphError, match="must read \\['vector'\\]; it reads \\['query'\\]"):
        _linted(Node("search", Op.SEARCH, {"query": QueryInput("query_str")}, ("hits",), SearchArgs(2), INDEX))
    with pytest.raises(GraphError, match="must read \\['nodes', 'query'\\]"):
        _linted(Node("s", ModuleKind.SYNTHESIZE, {"query": QueryInput("query_str")}, ("response",),
                     SynthesizeArgs(LLM, Sampling(), str, finish=str)))


def test_lint_rejects_meta_on_an_op_it_does_not_apply_to():
    with pytest.raises(GraphError, match="meta stream, which only a decode or a generate may have"):
        _linted(Node("embed", Op.EMBED, {"text": QueryInput("query_str")}, ("vector",), EmbedArgs(), EMBEDDING,
                     meta=Meta(stream=True)))
    with pytest.raises(GraphError, match="stops after items but does not stream"):
        _linted(Node("decode", Op.DECODE, {"tokens": QueryInput("query_str")}, ("text",), DecodeArgs(Sampling()), LLM,
                     meta=Meta(stop_after=StopAfter(str.split, 2))))


def test_arguments_refuse_wrong_values_where_they_are_made():
    with pytest.raises(ValueError, match="top_k must be a positive int, got 0"):
        SearchArgs(0)
    with pytest.raises(ValueError, match="max_items must be positive"):
        ParseArgs(str.split, 0)
    with pytest.raises(ValueError, match="sampling must be a Sampling, got dict"):
        DecodeArgs({"max_tokens": 8})
    with pytest.raises(ValueError, match="llm must be the EngineId of a llm engine, got EngineId\\(kind=<EngineKind.VECTOR_INDEX"):
        SynthesizeArgs(INDEX, Sampling(), str, finish=str)


def test_erase_refuses_a_node_still_read_and_replace_all_uses_moves_its_readers():
    g = _chain()
    with pytest.raises(GraphError, match="cannot erase 'embed': \\['search'\\] still use it"):
        g.erase("embed")
    with pytest.raises(GraphError, match="cannot erase 'search': a graph output"):
        g.erase("search")
    g.add(Node("embed2", Op.EMBED, {"text": QueryInput("query_str")}, ("vector",), EmbedArgs(), EMBEDDING))
    g.replace_all_uses(Ref("embed", "vector"), Ref("embed2", "vector"))
    g.erase("embed")
    assert g["search"].inputs["vector"] == Ref("embed2", "vector") and "embed" not in g
    g.lint(Op)


def test_replace_refuses_a_node_without_an_output_its_readers_read():
    g = _chain()
    with pytest.raises(GraphError, match="read for outputs \\['vector'\\]"):
        g.replace(Node("embed", Op.EMBED, {"text": QueryInput("query_str")}, ("vec",), EmbedArgs(), EMBEDDING))


def test_fresh_names_never_collide():
    g = _chain()
    assert g.fresh_name("tail") == "tail" and g.fresh_name("embed") == "embed#1"


def test_copy_is_independent():
    g = _chain()
    h = g.copy()
    h.set_output("hits", Ref("embed", "vector"))
    h.erase("search")
    assert "search" in g and "search" not in h
