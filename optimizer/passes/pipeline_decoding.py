"""Pass 4, decoding pipelining: stream an LLM's list output and start on each item as it completes.

Where a decode's text is parsed into a bounded list of items (``parse`` with ``max_items``, one
item a line) and batch chains work on that list, the decode streams, each sub-batch of a chain
gets its own parse primitive that waits only for its items, and the decode stops once the parse
has all ``max_items`` items (nothing reads beyond them). Chains not yet split are split item by item.
A decode that anything but such parses reads (a call wanting the whole text) is left alone.
"""

from __future__ import annotations

from dataclasses import replace

from teola.optimizer.ir import Graph, Node, Op, Ref
from teola.optimizer.passes.decompose_stages import find_batch_chains, split_chain


def _list_parsers(graph: Graph) -> list[Node]:
    """Parses of a decode's text into bounded lists, where every reader of that decode is such a
    parse of the same kind: only parses read a stream, so only then may the decode stream."""
    parsers = []
    for n in graph:
        if n.op is not Op.PARSE or "max_items" not in n.params or "items" in n.params:
            continue
        decode = graph[n.inputs["text"].node]
        readers = graph.consumers(decode.name)
        if decode.op is Op.DECODE and all(r.op is Op.PARSE and r.params["fn"] is n.params["fn"] for r in readers):
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
        for node in list(result):
            sliced = {arg: s for arg, s in node.inputs.items()
                      if isinstance(s, Ref) and s.node == parse.name and s.items is not None}
            for arg, source in sliced.items():
                name = f"{parse.name}[{source.items[0]}:{source.items[1]}]"
                if name not in result:
                    result.add(replace(parse, name=name, params={**parse.params, "items": source.items}))
                node = node.with_inputs(**{arg: Ref(name, source.output)})
            if sliced:
                result.replace(node)
        stop = (parse.params["fn"], parse.params["max_items"])
        result.replace(replace(decode, params={**decode.params, "stream": True, "stop_after_items": stop}))
    result.lint(Op)
    return result
