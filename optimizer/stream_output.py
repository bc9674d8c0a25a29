"""Streaming a plan's answer: the plan whose output is its final decode's text, as it is generated,
or that of the decode of whichever route ran."""

from __future__ import annotations

from dataclasses import replace

import networkx as nx

from teola.optimizer.ir import Graph, GraphError, Op, Ref, Source
from teola.optimizer.ops import FnArgs


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


def stream_routes(plan: Graph, picked: str, decodes: dict[str, str], output: str) -> Graph:
    """A copy of ``plan`` whose output ``output`` is, as soon as it is known, what the node ``picked``
    picks of its routes (its inputs), read as they come: a route in ``decodes`` (input name -> the
    decode that gives its value) gives that decode's text stream (``TextStream.node`` names the
    decode), the decode streaming; any other gives its value once it has it. So ``picked`` must
    pick a route once the others are known not to have run (a branch's, not a fallback's, whose
    next try waits for the whole text of the one before).

    Nothing is dropped: what reads a streamed decode reads its text whole, so the framework's own
    finishing work and the regions on it end after the stream (``GraphScheduler`` runs them on).
    A decode that anything but a framework callable reads is not streamed.
    """
    if output not in plan.outputs:
        raise GraphError(f"the plan has no output {output!r}; its outputs are {sorted(plan.outputs)}")
    if picked not in plan or not isinstance(plan[picked].args, FnArgs):
        raise GraphError(f"the plan has no framework callable {picked!r} to stream the routes of")
    result = plan.copy()
    node = plan[picked]
    inputs: dict[str, Source] = dict(node.inputs)
    streamed: list[str] = []
    for route, decode in decodes.items():
        if route in inputs and _streams_to_callables(result, decode):
            result.replace(result[decode].with_meta(stream=True))
            inputs[route] = Ref(decode, result[decode].outputs[0])
            streamed.append(route)
    answer = replace(node, name=result.fresh_name(f"{picked}.streamed"), inputs=inputs,
                     args=replace(node.args, reads_streams=tuple(streamed)))
    result.add(answer)
    result.set_output(output, Ref(answer.name, node.outputs[0]))
    result.lint(Op)
    return result


def _streams_to_callables(plan: Graph, decode: str) -> bool:
    """Whether ``decode`` is a decode that only framework callables read (so it may stream)."""
    return decode in plan and plan[decode].op is Op.DECODE and \
        all(isinstance(reader.args, FnArgs) for reader in plan.consumers(decode))
