"""Pass 4, decoding pipelining: stream an LLM's list output and start on each item as it completes.

Where a decode's text is parsed into a bounded list of items (a parse of at most ``max_items``
items, one a line) and batch chains work on that list, the decode streams, each sub-batch of a
chain gets its own parse primitive that waits only for its items (``meta.items``), and the decode
stops once the parse has all ``max_items`` items (``meta.stop_after``: nothing reads beyond them).
Chains not yet split are split item by item. A decode that anything but such parses reads (a call
wanting the whole text) is left alone.
"""

from __future__ import annotations

from dataclasses import replace

from teola.optimizer.ir import Graph, Node, Op, Ref
from teola.optimizer.ops import StopAfter
from teola.optimizer.passes.decompose_stages import find_batch_chains, split_chain


def _list_parsers(graph: Graph) -> list[Node]:
    """Whole-text parses of a decode, where every reader of that decode is a parse with the same
    arguments: only parses read a stream, so only then may the decode stream."""
    parsers = []
    for n in graph:
        if n.op is not Op.PARSE or n.meta.items is not None:
            continue
        decode = graph[n.inputs["text"].node]
        readers = graph.consumers(decode.name)
        if decode.op is Op.DECODE and all(r.op is Op.PARSE and r.args == n.args for r in readers):
            parsers.append(n)
    return parsers


def pipeline_decoding(graph: Graph) -> Graph:
    """A copy of ``graph`` whose list-producing decodes stream into per-sub-batch parses."""
    result = graph
    for chain in find_batch_chains(graph):
        if chain.source.node in {p.name for p in _list_parsers(graph)}:
            result = split_chain(result, chain, 1)
    result = result.copy()
    for parse in _list_parsers(result):
        decode = result[parse.inputs["text"].node]
        slices: dict[tuple[int, int], Node] = {}
        for node in list(result):
            sliced = {arg: s for arg, s in node.inputs.items()
                      if isinstance(s, Ref) and s.node == parse.name and s.items is not None}
            for arg, source in sliced.items():
                if source.items not in slices:
                    name = result.fresh_name(f"{parse.name}[{source.items[0]}:{source.items[1]}]")
                    slices[source.items] = result.add(replace(parse, name=name).with_meta(items=source.items))
                node = node.with_inputs(**{arg: Ref(slices[source.items].name, source.output)})
            if sliced:
                result.replace(node)
        result.replace(decode.with_meta(stream=True, stop_after=StopAfter(parse.args.parse, parse.args.max_items)))
    result.lint(Op)
    return result
