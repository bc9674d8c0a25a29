"""Lowering: a module graph into a primitive graph, one rule per module kind.

Each rule replaces one module by a chain of primitives with the same inputs and outputs, so
module-level references keep working: the module's name becomes the name of the primitive that
produces its outputs, and the other primitives get ``<module>.<step>`` names. A module's ``after``
(the framework's order) carries over to every primitive of its chain.

Module params the rules read:
- retrieve: ``embed_engine``, ``index_engine``, ``top_k``, ``to_nodes``; ``batch`` when its
  ``query`` input is a list of texts (one retrieval each); ``aggregate`` (embeddings -> one) when it
  searches by the texts of its ``embedding_texts`` input rather than by its query;
- synthesize: ``llm_engine``, ``sampling``, ``build_prompt``, ``finish``, and optionally
  ``build_prefix`` (the prompt's early-known prefix, for prefill splitting) and ``batch`` (the
  prompt is a list of independent prompts, prefilled and decoded together);
- generate: ``llm_engine``, ``sampling``, ``build_prompt``; with ``parse`` (text -> items) and
  ``max_items`` its output is a list of items, parsed line by line;
- fuse, postprocess, call: ``fn``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping

from teola.optimizer.ir import EngineKind, Graph, ModuleKind, Node, Op, Ref, Source

CALLABLE_ENGINE = EngineKind.CALLABLE.value


def _lower_retrieve(module: Node) -> list[Node]:
    """query text(s) -> embed -> search -> node objects (built by the framework's own mapping)."""
    p = module.params
    if "aggregate" in p:
        return _lower_aggregate_retrieve(module)
    batch = {"batch": True} if p.get("batch") else {}
    return [
        Node(f"{module.name}.embed", Op.EMBED, {"text": module.inputs["query"]}, ("vector",), p["embed_engine"], batch),
        Node(f"{module.name}.search", Op.SEARCH, {"vector": Ref(f"{module.name}.embed", "vector")}, ("hits",),
             p["index_engine"], {"top_k": p["top_k"], **batch}),
        Node(module.name, Op.CALL, {"hits": Ref(f"{module.name}.search", "hits"), "query": module.inputs["query"]},
             module.outputs, CALLABLE_ENGINE, {"fn": p["to_nodes"], "label": "hits to nodes", "pure": True, **batch}),
    ]


def _lower_aggregate_retrieve(module: Node) -> list[Node]:
    """embedding texts -> embed each -> aggregate (mean) -> search -> node objects for the query."""
    p = module.params
    return [
        Node(f"{module.name}.embed", Op.EMBED, {"text": module.inputs["embedding_texts"]}, ("vector",), p["embed_engine"],
             {"batch": True}),
        Node(f"{module.name}.aggregate", Op.FUSE, {"embeddings": Ref(f"{module.name}.embed", "vector")}, ("vector",),
             CALLABLE_ENGINE, {"fn": p["aggregate"], "label": "aggregate embeddings", "pure": True}),
        Node(f"{module.name}.search", Op.SEARCH, {"vector": Ref(f"{module.name}.aggregate", "vector")}, ("hits",),
             p["index_engine"], {"top_k": p["top_k"]}),
        Node(module.name, Op.CALL, {"hits": Ref(f"{module.name}.search", "hits"), "query": module.inputs["query"]},
             module.outputs, CALLABLE_ENGINE, {"fn": p["to_nodes"], "label": "hits to nodes", "pure": True}),
    ]


def _llm_call(module: Node, prompt_inputs: Mapping[str, Source], decode_name: str,
              decode_outputs: tuple[str, ...]) -> list[Node]:
    """prompt -> prefill -> decode for one LLM call of ``module``."""
    p = module.params
    batch = {"batch": True} if p.get("batch") else {}
    prompt_params = {"fn": p["build_prompt"], "pure": True}
    if "build_prefix" in p:
        prompt_params["build_prefix"] = p["build_prefix"]
        prompt_params["prefix_inputs"] = p["prefix_inputs"]
    return [
        Node(f"{module.name}.prompt", Op.PROMPT, prompt_inputs, ("prompt",), CALLABLE_ENGINE, prompt_params),
        Node(f"{module.name}.prefill", Op.PREFILL, {"prompt": Ref(f"{module.name}.prompt", "prompt")}, ("tokens",),
             p["llm_engine"], batch),
        Node(decode_name, Op.DECODE, {"tokens": Ref(f"{module.name}.prefill", "tokens")}, decode_outputs,
             p["llm_engine"], {"sampling": p["sampling"], **batch}),
    ]


def _lower_synthesize(module: Node) -> list[Node]:
    """(query, nodes) -> prompt -> prefill -> decode -> framework response."""
    query, nodes = module.inputs["query"], module.inputs["nodes"]
    return _llm_call(module, {"query": query, "nodes": nodes}, f"{module.name}.decode", ("text",)) + [
        Node(module.name, Op.CALL, {"query": query, "nodes": nodes, "answer": Ref(f"{module.name}.decode", "text")},
             module.outputs, CALLABLE_ENGINE,
             {"fn": module.params["finish"], "label": "build response", "runs_on_skipped": True, "pure": True}),
    ]


def _lower_generate(module: Node) -> list[Node]:
    """inputs -> prompt -> prefill -> decode (-> parse into a list of items)."""
    p = module.params
    if "parse" not in p:
        return _llm_call(module, module.inputs, module.name, module.outputs)
    return _llm_call(module, module.inputs, f"{module.name}.decode", ("text",)) + [
        Node(module.name, Op.PARSE, {"text": Ref(f"{module.name}.decode", "text")}, module.outputs, CALLABLE_ENGINE,
             {"fn": p["parse"], "max_items": p["max_items"], "pure": True}),
    ]


def _lower_fuse(module: Node) -> list[Node]:
    """Several ranked lists -> one, by the framework's own fusion."""
    return [Node(module.name, Op.FUSE, module.inputs, module.outputs, CALLABLE_ENGINE, module.params)]


def _lower_call(module: Node) -> list[Node]:
    """Opaque framework work runs as-is, as one primitive."""
    return [Node(module.name, Op.CALL, module.inputs, module.outputs, CALLABLE_ENGINE, module.params)]


LOWERING_RULES: dict[ModuleKind, Callable[[Node], list[Node]]] = {
    ModuleKind.RETRIEVE: _lower_retrieve,
    ModuleKind.POSTPROCESS: _lower_call,
    ModuleKind.SYNTHESIZE: _lower_synthesize,
    ModuleKind.GENERATE: _lower_generate,
    ModuleKind.FUSE: _lower_fuse,
    ModuleKind.CALL: _lower_call,
}


def lower(modules: Graph) -> Graph:
    """Lower every module of ``modules`` into primitives; the result passes ``lint(Op)``."""
    modules.lint(ModuleKind)
    primitives = Graph(modules.inputs)
    for module in modules.topological_order():
        for node in LOWERING_RULES[ModuleKind(module.op)](module):
            primitives.add(replace(node, after=module.after) if module.after else node)
    for name, source in modules.outputs.items():
        primitives.set_output(name, source)
    primitives.lint(Op)
    return primitives
