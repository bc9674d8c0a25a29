"""Streaming a plan's answer: the plan whose output is its final decode's text, as it is generated."""

from __future__ import annotations

import networkx as nx

from teola.optimizer.ir import Graph, GraphError, Op, Ref


def stream_output(plan: Graph, decode: str, output: str) -> Graph:
    """A copy of ``plan`` whose output ``output`` is the text stream of the decode ``decode``.

    The decode streams; the primitives that turned its text into the former output are dropped, and
    with them the regions that read them (and those regions' children): the caller reports their
    runs as it reads the answer. A region on the streamed text itself (the model's run) stays: it is
    told each piece and ends with the stream. Everything upstream, early prefills and what only
    regions read included, stays as planned.
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
    finishing = nx.descendants(dag, decode)
    result.keep_regions(lambda region: all(not isinstance(s, Ref) or s.node not in finishing for s in region.sources()))
    read = [ref.node for ref in result.outputs.values()]
    read += [s.node for region in result.regions.values() for s in region.sources() if isinstance(s, Ref)]
    needed = set().union(*({node} | nx.ancestors(dag, node) for node in read))
    for name in [n.name for n in reversed(result.topological_order()) if n.name not in needed]:
        result.erase(name)
    result.lint(Op)
    return result
