"""The order of the engine work of a LangGraph graph's nodes: farthest from the graph's end first.

The runtime ranks the primitives of its own plans by their distance to the outputs (the paper's
topology-aware order). A LangGraph graph is not one plan: its nodes call models, retrievers and
chains one by one. So Teola ranks the nodes instead. A node's *depth* is the number of nodes on the
longest path from it to the graph's end, as the graph draws its edges (``get_graph()``: fixed edges,
and a conditional edge's possible targets). The engine work a node sends (model calls, embeddings,
searches, the plans of chains it runs) goes at query priority ``outer - depth``: a node with more of
the graph still behind it is served first, across every graph in flight. ``outer`` is the priority
the graph was run at (a subgraph runs inside its parent node's).

A cycle (an agent loop) has no longest path; its nodes share one depth: that of the cycle, all its
nodes counted, plus what follows it.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

import networkx as nx

from teola.adapters.langgraph import compat

log = logging.getLogger(__name__)


def node_depths(successors: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Every node's depth in the graph ``successors`` draws (node -> the nodes its edges lead to): the
    node count of the longest path from it to a node with no successor (the end), itself excluded."""
    dag = nx.DiGraph()
    for node, targets in successors.items():
        dag.add_node(node)
        dag.add_edges_from((node, target) for target in targets)
    condensed = nx.condensation(dag)
    members = condensed.graph["mapping"]
    size = {c: len(condensed.nodes[c]["members"]) for c in condensed}
    below: dict[int, int] = {}  # a component -> the node count of the longest path after it
    for component in reversed(list(nx.topological_sort(condensed))):
        below[component] = max((size[s] + below[s] for s in condensed.successors(component)), default=0)
    return {node: below[c] + size[c] - 1 for node, c in members.items()}


def graph_depths(graph: Any) -> dict[str, int]:
    """``node_depths`` of a compiled graph as it draws itself; empty (every node alike) for a graph that
    cannot draw itself or for no graph (``None``)."""
    if graph is None:
        return {}
    try:
        return node_depths(compat.drawn_successors(graph))
    except Exception:  # a graph LangGraph cannot draw still runs; its nodes' work is just not ordered
        log.debug("teola: could not draw %r; its nodes' engine work is not ordered", graph, exc_info=True)
        return {}
