"""Pass 3, prefill splitting: prefill the prompt's early-known prefix while its late parts are computed.

A synthesis prompt is known in part from the start (system message, instructions, sometimes the
question) and in part only after retrieval (the context). Where the adapter says how to build that
prefix (``PromptArgs.prefix``: a builder reading some of the prompt's inputs), this pass adds a
prefix prompt and a warming prefill (``meta.warm``) that runs as soon as those inputs are there;
the full prefill then reads the warm one, so it starts only once the prefix sits in the engine's
cache. The new primitives wait for nothing but their inputs (no module order): starting early is
their point. The prefix is cut from the user's own template, never reordered.
"""

from __future__ import annotations

from teola.optimizer.ir import Graph, Node, Op, Ref
from teola.optimizer.ops import CALLABLE, Meta, PrefillArgs, PromptArgs


def split_prefill(graph: Graph) -> Graph:
    """A copy of ``graph`` where each splittable prompt's prefix is prefilled ahead of the rest."""
    result = graph.copy()
    for prefill in graph:
        if prefill.op is not Op.PREFILL or prefill.meta.warm or "prefix" in prefill.inputs:
            continue
        prompt = graph[prefill.inputs["prompt"].node]
        spec = prompt.args.prefix
        if spec is None:
            continue
        early = {arg: prompt.inputs[arg] for arg in spec.inputs}
        if len(early) == len(prompt.inputs):
            continue  # the whole prompt is known as early as its prefix: nothing to gain
        prefix = result.add(Node(result.fresh_name(f"{prompt.name}_prefix"), Op.PROMPT, early, ("prompt",),
                                 PromptArgs(spec.build), CALLABLE))
        warm = result.add(Node(result.fresh_name(f"{prefill.name}_prefix"), Op.PREFILL,
                               {"prompt": Ref(prefix.name, "prompt")}, ("tokens",), PrefillArgs(), prefill.engine,
                               meta=Meta(warm=True)))
        result.replace(prefill.with_inputs(prefix=Ref(warm.name, "tokens")))
    result.lint(Op)
    return result
