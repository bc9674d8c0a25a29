"""Streaming a plan's answer: the plan whose output is its final decode's text, as it is generated."""

from __future__ import annotations

import networkx as nx

from teola.optimizer.ir import Graph, GraphError, Op, Ref


def stream_output(plan: Graph, decode: str, output: str) -> Graph:
    """A copy of ``plan`` whose output ``output`` is the text stream of the decode ``decode``.

    The decode streams; the primitives nothing reads any more (those that turned its text into the
    former output) are dropped, and with them the regions that read them or the streamed text (and
    those regions' children): the caller reports the streamed answer's runs as it reads it. Everything upstream, early prefills included, stays as planned.
    """
    if decode not in plan or plan[decode].op is not Op.DECODE:
        raise GraphError(f"{decode!r} is not a decode of this plan; only an LLM's decode can stream an answer")
    if output not in plan.outputs:
        raise GraphError(f"the plan has no output {output!r}; its outputs are {sorted(plan.outputs)}")
    node = plan[decode]
    result = plan.copy()
    result.replace(node.with_meta(stream=True))
    result.set_output(output, Ref(decode, node.outputs[0]))
    dag = result.to_networkx()
    needed = set().union(*({ref.node} | nx.ancestors(dag, ref.node) for ref in result.outputs.values()))
    result.keep_regions(lambda region: all(not isinstance(s, Ref) or (s.node in needed and s.node != decode)
                                           for s in region.sources()))
    for name in [n.name for n in reversed(result.topological_order()) if n.name not in needed]:
        result.erase(name)
    result.lint(Op)
    return result
