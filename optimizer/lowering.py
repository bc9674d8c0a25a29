"""Lowering: a module graph into a primitive graph, one rule per module kind.

Each rule replaces one module by a chain of primitives with the same inputs and outputs, so
module-level references keep working: the module's name becomes the name of the primitive that
produces its outputs, and the other primitives get ``<module>.<step>`` names.
"""

from __future__ import annotations

from typing import Callable

from teola.optimizer.ir import EngineKind, Graph, ModuleKind, Node, Op, Ref

CALLABLE_ENGINE = EngineKind.CALLABLE.value


def _lower_retrieve(module: Node) -> list[Node]:
    """query text -> embed -> search -> node objects (built by the framework's own mapping)."""
    p = module.params
    return [
        Node(f"{module.name}.embed", Op.EMBED, {"text": module.inputs["query"]}, ("vector",), p["embed_engine"]),
        Node(f"{module.name}.search", Op.SEARCH, {"vector": Ref(f"{module.name}.embed", "vector")}, ("hits",),
             p["index_engine"], {"top_k": p["top_k"]}),
        Node(module.name, Op.CALL, {"hits": Ref(f"{module.name}.search", "hits"), "query": module.inputs["query"]},
             module.outputs, CALLABLE_ENGINE, {"fn": p["to_nodes"], "label": "hits to nodes"}),
    ]


def _lower_synthesize(module: Node) -> list[Node]:
    """(query, nodes) -> prompt -> prefill -> decode -> framework response."""
    p = module.params
    query, nodes = module.inputs["query"], module.inputs["nodes"]
    return [
        Node(f"{module.name}.prompt", Op.PROMPT, {"query": query, "nodes": nodes}, ("prompt",), CALLABLE_ENGINE,
             {"fn": p["build_prompt"]}),
        Node(f"{module.name}.prefill", Op.PREFILL, {"prompt": Ref(f"{module.name}.prompt", "prompt")}, ("tokens",),
             p["llm_engine"]),
        Node(f"{module.name}.decode", Op.DECODE, {"tokens": Ref(f"{module.name}.prefill", "tokens")}, ("text",),
             p["llm_engine"], {"sampling": p["sampling"]}),
        Node(module.name, Op.CALL, {"query": query, "nodes": nodes, "answer": Ref(f"{module.name}.decode", "text")},
             module.outputs, CALLABLE_ENGINE,
             {"fn": p["finish"], "label": "build response", "runs_on_skipped": True}),
    ]


def _lower_call(module: Node) -> list[Node]:
    """Opaque framework work runs as-is, as one primitive."""
    return [Node(module.name, Op.CALL, module.inputs, module.outputs, CALLABLE_ENGINE, module.params)]


LOWERING_RULES: dict[ModuleKind, Callable[[Node], list[Node]]] = {
    ModuleKind.RETRIEVE: _lower_retrieve,
    ModuleKind.POSTPROCESS: _lower_call,
    ModuleKind.SYNTHESIZE: _lower_synthesize,
    ModuleKind.CALL: _lower_call,
}


def lower(modules: Graph) -> Graph:
    """Lower every module of ``modules`` into primitives; the result passes ``lint(Op)``."""
    modules.lint(ModuleKind)
    primitives = Graph(modules.inputs)
    for module in modules.topological_order():
        for node in LOWERING_RULES[ModuleKind(module.op)](module):
            primitives.add(node)
    for name, source in modules.outputs.items():
        primitives.set_output(name, source)
    primitives.lint(Op)
    return primitives
