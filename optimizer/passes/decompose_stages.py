"""Pass 2, stage decomposition: split a batched chain into sub-batches that pipeline.

A chain is a run of batch primitives over one list (embed N queries -> search N vectors -> map N
hit lists to nodes). Split into sub-batches, the search of the first sub-batch runs while the
second is embedded. The sub-batch size comes from the engines' measured costs
(``teola.optimizer.cost_model``): splitting pays only where an engine's per-item cost outweighs
its fixed cost per batch. The list's length must be bounded: its producer is a parse of at most
``max_items`` items.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from teola.optimizer.cost_model import CostProfile, LinearCost, best_split_size
from teola.optimizer.ir import Graph, Node, Op, Ref, Source
from teola.optimizer.ops import CALLABLE, FnArgs, ParseArgs

FREE = LinearCost(0.0, 0.0)


@dataclass(frozen=True)
class BatchChain:
    """Batch primitives ``members`` (in order) working item by item over the list ``source``."""

    source: Ref
    members: tuple[str, ...]
    max_items: int


def concat_parts(**parts: list) -> list:
    """The sub-batches' results joined back into one list, in order."""
    return [item for part in parts.values() for item in part]


def find_batch_chains(graph: Graph) -> list[BatchChain]:
    """Every maximal chain of batch primitives fed by one unsplit, bounded list."""
    chains = []
    for node in graph.topological_order():
        if not node.batched:
            continue
        sources = {s for s in node.inputs.values() if isinstance(s, Ref)}
        if len(sources) != 1 or any(graph[s.node].batched for s in sources):
            continue
        (source,) = sources
        producer = graph[source.node]
        if source.items is not None or not isinstance(producer.args, ParseArgs):
            continue
        members = [node.name]
        while True:
            consumers = graph.consumers(members[-1])
            if len(consumers) != 1 or not consumers[0].batched:
                break
            nxt = consumers[0]
            if not all(isinstance(s, Ref) and (s == source or s.node in members) for s in nxt.inputs.values()):
                break
            members.append(nxt.name)
        chains.append(BatchChain(source, tuple(members), producer.args.max_items))
    return chains


def split_chain(graph: Graph, chain: BatchChain, size: int) -> Graph:
    """A copy of ``graph`` with ``chain`` run in sub-batches of ``size`` items, joined at its end.

    A region that reads one item of a member reads it from that item's sub-batch; a member a region
    reads whole (or across sub-batches) is joined too, like the last."""
    split = graph.copy()
    slices = [(start, min(start + size, chain.max_items)) for start in range(0, chain.max_items, size)]
    parts: dict[str, list[Node]] = {name: [] for name in chain.members}
    for j, items in enumerate(slices):
        for name in chain.members:
            node = graph[name]
            inputs = {arg: Ref(s.node, s.output, items) if s == chain.source else Ref(parts[s.node][j].name, s.output)
                      for arg, s in node.inputs.items()}
            parts[name].append(split.add(replace(node, name=split.fresh_name(f"{name}@{j}"), inputs=inputs)))

    def in_its_part(source: Source) -> Source:
        if not isinstance(source, Ref) or source.node not in chain.members[:-1] or source.items is None:
            return source
        start, stop = source.items
        for part, (first, end) in zip(parts[source.node], slices):
            if first <= start and stop <= end:
                return Ref(part.name, source.output, (start - first, stop - first))
        return source

    split.map_region_sources(in_its_part)
    split.replace(_joined(graph[chain.members[-1]], parts[chain.members[-1]]))
    for name in reversed(chain.members[:-1]):  # only the chain's next member read these; the last is now the join
        if split.region_readers(name):
            split.replace(_joined(graph[name], parts[name]))
        else:
            split.erase(name)
    split.lint(Op)
    return split


def _joined(node: Node, parts: list[Node]) -> Node:
    """A node named as ``node`` that joins its sub-batches' results into one list."""
    joined = {f"part{j}": Ref(part.name, node.outputs[0]) for j, part in enumerate(parts)}
    return Node(node.name, Op.FUSE, joined, node.outputs, FnArgs(concat_parts, "join sub-batches", pure=True),
                CALLABLE, node.after)


def decompose_stages(graph: Graph, profile: CostProfile) -> Graph:
    """Split every bounded batch chain at the sub-batch size its engines' costs favour."""
    result = graph
    for chain in find_batch_chains(graph):
        stages = [profile.get(graph[name].engine.name, FREE) for name in chain.members]
        size = best_split_size(chain.max_items, stages)
        if size < chain.max_items:
            result = split_chain(result, chain, size)
    return result
