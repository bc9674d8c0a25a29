"""Pass 1, dependency pruning: keep only the dependencies data actually flows along.

A framework runs its modules one after another, and the module graph records that order as
``after`` edges. A primitive needs only its inputs, so every order edge goes, except between two
opaque calls that may have side effects (user code Teola cannot see into): those keep their order.
"""

from __future__ import annotations

from dataclasses import replace

from teola.optimizer.ir import Graph, Node, Op


def _opaque(node: Node) -> bool:
    return node.op is Op.CALL and not node.args.pure


def prune_dependencies(graph: Graph) -> Graph:
    """A copy of ``graph`` whose nodes wait only for their inputs (and opaque calls for earlier opaque calls)."""
    pruned = graph.copy()
    for node in graph:
        keep = tuple(b for b in node.after if _opaque(node) and _opaque(graph[b]))
        if keep != node.after:
            pruned.replace(replace(node, after=keep))
    return pruned
