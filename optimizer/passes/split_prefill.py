"""Pass 3, prefill splitting: prefill the prompt's early-known prefix while its late parts are computed.

A synthesis prompt is known in part from the start (system message, instructions, sometimes the
question) and in part only after retrieval (the context). Where the adapter says how to build that
prefix (``build_prefix`` on the prompt primitive, from ``prefix_inputs`` only), this pass adds a
``prefix`` prompt and a warming ``prefill`` that runs as soon as those inputs are there; the full
prefill then reads the warm one, so it starts only once the prefix sits in the engine's cache.
The new primitives wait for nothing but their inputs (no module order): starting early is their point.
The prefix is cut from the user's own template, never reordered.
"""

from __future__ import annotations

from teola.optimizer.ir import EngineKind, Graph, Node, Op, Ref


def split_prefill(graph: Graph) -> Graph:
    """A copy of ``graph`` where each splittable prompt's prefix is prefilled ahead of the rest."""
    result = graph.copy()
    for prefill in graph:
        if prefill.op is not Op.PREFILL or prefill.params.get("warm") or "prefix" in prefill.inputs:
            continue
        prompt = graph[prefill.inputs["prompt"].node]
        if "build_prefix" not in prompt.params:
            continue
        early = {arg: prompt.inputs[arg] for arg in prompt.params["prefix_inputs"]}
        if len(early) == len(prompt.inputs):
            continue  # the whole prompt is known as early as its prefix: nothing to gain
        base = prompt.name.removesuffix(".prompt")
        result.add(Node(f"{base}.prefix", Op.PROMPT, early, ("prompt",), EngineKind.CALLABLE.value,
                        {"fn": prompt.params["build_prefix"], "pure": True}))
        result.add(Node(f"{base}.prefill_prefix", Op.PREFILL, {"prompt": Ref(f"{base}.prefix", "prompt")}, ("tokens",),
                        prefill.engine, {"warm": True}))
        result.replace(prefill.with_inputs(prefix=Ref(f"{base}.prefill_prefix", "tokens")))
    result.lint(Op)
    return result
