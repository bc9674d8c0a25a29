"""Lowering: a module graph into a primitive graph, one rule per module kind.

Each rule replaces one module by a chain of primitives with the same inputs and outputs, so
module-level references keep working: the module's name becomes the name of the primitive that
produces its outputs, and the other primitives get ``<module>.<step>`` names. A module's ``after``
(the framework's order) carries over to every primitive of its chain, its ``region`` to that last
primitive, the one that runs the module's framework code (engine primitives run none). What a rule reads of a
module is its typed arguments (``teola.optimizer.ops``): ``RetrieveArgs``, ``SynthesizeArgs``,
``GenerateArgs``, and ``FnArgs`` for fuse, postprocess and call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping

from teola.optimizer.ir import Graph, GraphError, ModuleKind, Node, Op, QueryInput, Ref, Source
from teola.optimizer.ops import (CALLABLE, NO_META, DecodeArgs, EmbedArgs, FnArgs, GenerateArgs, LLMCallArgs, Meta,
                                 ParseArgs, PrefillArgs, PromptArgs, RetrieveArgs, SearchArgs, SynthesizeArgs)


def _lower_retrieve(module: Node) -> list[Node]:
    """query text(s) -> embed -> search -> node objects (built by the framework's own mapping)."""
    a: RetrieveArgs = module.args
    if a.aggregate is not None:
        return _lower_aggregate_retrieve(module)
    name, batch = module.name, a.batch
    return [
        Node(f"{name}.embed", Op.EMBED, {"text": module.inputs["query"]}, ("vector",), EmbedArgs(batch=batch), a.embed),
        Node(f"{name}.search", Op.SEARCH, {"vector": Ref(f"{name}.embed", "vector")}, ("hits",),
             SearchArgs(a.top_k, batch=batch), a.index),
        Node(name, Op.CALL, {"hits": Ref(f"{name}.search", "hits"), "query": module.inputs["query"]}, module.outputs,
             FnArgs(a.to_nodes, "hits to nodes", pure=True, batch=batch), CALLABLE),
    ]


def _lower_aggregate_retrieve(module: Node) -> list[Node]:
    """embedding texts -> embed each -> aggregate (mean) -> search -> node objects for the query."""
    a: RetrieveArgs = module.args
    name = module.name
    return [
        Node(f"{name}.embed", Op.EMBED, {"text": module.inputs["embedding_texts"]}, ("vector",), EmbedArgs(batch=True),
             a.embed),
        Node(f"{name}.aggregate", Op.FUSE, {"embeddings": Ref(f"{name}.embed", "vector")}, ("vector",),
             FnArgs(a.aggregate, "aggregate embeddings", pure=True), CALLABLE),
        Node(f"{name}.search", Op.SEARCH, {"vector": Ref(f"{name}.aggregate", "vector")}, ("hits",), SearchArgs(a.top_k),
             a.index),
        Node(name, Op.CALL, {"hits": Ref(f"{name}.search", "hits"), "query": module.inputs["query"]}, module.outputs,
             FnArgs(a.to_nodes, "hits to nodes", pure=True), CALLABLE),
    ]


def _llm_call(module: Node, prompt_inputs: Mapping[str, Source], decode_name: str,
              decode_outputs: tuple[str, ...]) -> list[Node]:
    """prompt -> prefill -> decode for one LLM call of ``module`` (its text streams where the module's does:
    ``meta.stream``)."""
    a: LLMCallArgs = module.args
    name, batch = module.name, a.batch
    return [
        Node(f"{name}.prompt", Op.PROMPT, prompt_inputs, ("prompt",), PromptArgs(a.build_prompt, a.prefix), CALLABLE),
        Node(f"{name}.prefill", Op.PREFILL, {"prompt": Ref(f"{name}.prompt", "prompt")}, ("tokens",),
             PrefillArgs(batch=batch), a.llm),
        Node(decode_name, Op.DECODE, {"tokens": Ref(f"{name}.prefill", "tokens")}, decode_outputs,
             DecodeArgs(a.sampling, batch=batch), a.llm, meta=Meta(stream=True) if module.meta.stream else NO_META),
    ]


def _lower_synthesize(module: Node) -> list[Node]:
    """(query, nodes) -> prompt -> prefill -> decode -> framework response."""
    a: SynthesizeArgs = module.args
    query, nodes = module.inputs["query"], module.inputs["nodes"]
    return _llm_call(module, {"query": query, "nodes": nodes}, f"{module.name}.decode", ("text",)) + [
        Node(module.name, Op.CALL, {"query": query, "nodes": nodes, "answer": Ref(f"{module.name}.decode", "text")},
             module.outputs, FnArgs(a.finish, "build response", pure=True, runs_on_skipped=("answer",)), CALLABLE),
    ]


def _lower_generate(module: Node) -> list[Node]:
    """inputs -> prompt -> prefill -> decode (-> parse into a list of items)."""
    a: GenerateArgs = module.args
    if a.parse is None:
        return _llm_call(module, module.inputs, module.name, module.outputs)
    return _llm_call(module, module.inputs, f"{module.name}.decode", ("text",)) + [
        Node(module.name, Op.PARSE, {"text": Ref(f"{module.name}.decode", "text")}, module.outputs,
             ParseArgs(a.parse, a.max_items), CALLABLE),
    ]


def _lower_fn(op: Op) -> Callable[[Node], list[Node]]:
    """A module whose work is one framework callable runs as-is, as one ``op`` primitive."""

    def lower_fn(module: Node) -> list[Node]:
        return [Node(module.name, op, module.inputs, module.outputs, module.args, CALLABLE)]

    return lower_fn


LOWERING_RULES: dict[ModuleKind, Callable[[Node], list[Node]]] = {
    ModuleKind.RETRIEVE: _lower_retrieve,
    ModuleKind.POSTPROCESS: _lower_fn(Op.CALL),
    ModuleKind.SYNTHESIZE: _lower_synthesize,
    ModuleKind.GENERATE: _lower_generate,
    ModuleKind.FUSE: _lower_fn(Op.FUSE),
    ModuleKind.CALL: _lower_fn(Op.CALL),
}


def lower(modules: Graph) -> Graph:
    """Lower every module of ``modules`` into primitives; the result passes ``lint(Op)``.

    Regions come along; one that reads an output of a module's chain other than the module's own
    (a generate's raw ``text`` behind its parse) reads it where the chain produces it.
    """
    modules.lint(ModuleKind)
    primitives = Graph(modules.inputs)
    chain_outputs: dict[tuple[str, str], Ref] = {}
    for module in modules.topological_order():
        for node in LOWERING_RULES[ModuleKind(module.op)](module):
            primitives.add(replace(node, after=module.after, region=module.region if node.name == module.name else None))
            for output in node.outputs:
                chain_outputs.setdefault((module.name, output), Ref(node.name, output))
        chain_outputs.update({(module.name, output): Ref(module.name, output) for output in module.outputs})
    for name, source in modules.outputs.items():
        primitives.set_output(name, source)

    def lowered(source: Source) -> Source:
        if isinstance(source, QueryInput):
            return source
        if (source.node, source.output) not in chain_outputs:
            raise GraphError(f"a region reads {source}, which no primitive of module {source.node!r} produces")
        return replace(chain_outputs[(source.node, source.output)], items=source.items)

    for region in modules.regions.values():
        primitives.add_region(replace(region, inputs={k: lowered(s) for k, s in region.inputs.items()},
                                      outputs={k: lowered(s) for k, s in region.outputs.items()}))
    primitives.lint(Op)
    return primitives
