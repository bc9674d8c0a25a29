from teola.optimizer.ir import Graph, ModuleKind, Node, Op, QueryInput, Ref
from teola.optimizer.lowering import lower
from teola.optimizer.ops import CALLABLE, EngineId, EngineKind, FnArgs, GenerateArgs, Meta, RetrieveArgs, SynthesizeArgs
from teola.optimizer.values import Sampling

EMBEDDING = EngineId(EngineKind.EMBEDDING, "embedding")
INDEX = EngineId(EngineKind.VECTOR_INDEX, "index")
LLM = EngineId(EngineKind.LLM, "llm")


def _rag_modules() -> Graph:
    g = Graph()
    g.add(Node("retrieve", ModuleKind.RETRIEVE, {"query": QueryInput("query_str")}, ("nodes",),
               RetrieveArgs(EMBEDDING, INDEX, 3, lambda hits, query: hits)))
    g.add(Node("rerank", ModuleKind.POSTPROCESS, {"nodes": Ref("retrieve", "nodes")}, ("nodes",),
               FnArgs(lambda nodes: nodes)))
    g.add(Node("synthesize", ModuleKind.SYNTHESIZE, {"query": QueryInput("query_str"), "nodes": Ref("rerank", "nodes")},
               ("response",), SynthesizeArgs(LLM, Sampling(max_tokens=8), lambda query, nodes: None,
                                             finish=lambda query, nodes, answer: answer)))
    g.set_output("response", Ref("synthesize", "response"))
    return g


def test_lowering_a_rag_pipeline_gives_its_primitive_chain():
    plan = lower(_rag_modules())
    assert [(n.name, n.op, n.engine) for n in plan.topological_order()] == [
        ("retrieve.embed", Op.EMBED, EMBEDDING),
        ("retrieve.search", Op.SEARCH, INDEX),
        ("retrieve", Op.CALL, CALLABLE),
        ("rerank", Op.CALL, CALLABLE),
        ("synthesize.prompt", Op.PROMPT, CALLABLE),
        ("synthesize.prefill", Op.PREFILL, LLM),
        ("synthesize.decode", Op.DECODE, LLM),
        ("synthesize", Op.CALL, CALLABLE),
    ]
    assert plan["retrieve.search"].args.top_k == 3
    assert plan["synthesize.decode"].args.sampling == Sampling(max_tokens=8)
    # the response builder must see a skipped decode (no nodes, or a refine fallback)
    assert plan["synthesize"].args.runs_on_skipped == ("answer",)
    assert plan.outputs == {"response": Ref("synthesize", "response")}


def test_lowering_keeps_the_module_graph_untouched():
    modules = _rag_modules()
    before = str(modules)
    lower(modules)
    assert str(modules) == before


def test_a_generate_module_that_streams_lowers_to_a_streaming_decode():
    g = Graph()
    g.add(Node("answer", ModuleKind.GENERATE, {"query": QueryInput("query_str")}, ("text",),
               GenerateArgs(LLM, Sampling(), lambda query: query), meta=Meta(stream=True)))
    g.add(Node("other", ModuleKind.GENERATE, {"query": QueryInput("query_str")}, ("text",),
               GenerateArgs(LLM, Sampling(), lambda query: query)))
    g.set_output("text", Ref("answer", "text"))
    g.set_output("other", Ref("other", "text"))
    plan = lower(g)
    assert plan["answer"].op is Op.DECODE and plan["answer"].meta.stream
    assert not plan["other"].meta.stream and not plan["answer.prompt"].meta.stream
