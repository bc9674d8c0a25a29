from teola.optimizer.ir import Graph, ModuleKind, Node, Op, QueryInput, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.values import Sampling


def _rag_modules() -> Graph:
    g = Graph()
    g.add(Node("retrieve", ModuleKind.RETRIEVE, {"query": QueryInput("query_str")}, ("nodes",), params={
        "embed_engine": "embedding", "index_engine": "index", "top_k": 3, "to_nodes": lambda hits, query: hits}))
    g.add(Node("rerank", ModuleKind.POSTPROCESS, {"nodes": Ref("retrieve", "nodes")}, ("nodes",),
               params={"fn": lambda nodes: nodes}))
    g.add(Node("synthesize", ModuleKind.SYNTHESIZE, {"query": QueryInput("query_str"), "nodes": Ref("rerank", "nodes")},
               ("response",), params={"llm_engine": "llm", "sampling": Sampling(max_tokens=8),
                                      "build_prompt": lambda query, nodes: None,
                                      "finish": lambda query, nodes, answer: answer}))
    g.set_output("response", Ref("synthesize", "response"))
    return g


def test_lowering_a_rag_pipeline_gives_its_primitive_chain():
    plan = lower(_rag_modules())
    assert [(n.name, n.op, n.engine) for n in plan.topological_order()] == [
        ("retrieve.embed", Op.EMBED, "embedding"),
        ("retrieve.search", Op.SEARCH, "index"),
        ("retrieve", Op.CALL, "callable"),
        ("rerank", Op.CALL, "callable"),
        ("synthesize.prompt", Op.PROMPT, "callable"),
        ("synthesize.prefill", Op.PREFILL, "llm"),
        ("synthesize.decode", Op.DECODE, "llm"),
        ("synthesize", Op.CALL, "callable"),
    ]
    assert plan["retrieve.search"].params["top_k"] == 3
    assert plan["synthesize.decode"].params["sampling"] == Sampling(max_tokens=8)
    # the response builder must see a skipped decode (no nodes, or a refine fallback)
    assert plan["synthesize"].params["runs_on_skipped"] is True
    assert plan.outputs == {"response": Ref("synthesize", "response")}


def test_lowering_keeps_the_module_graph_untouched():
    modules = _rag_modules()
    before = str(modules)
    lower(modules)
    assert str(modules) == before
