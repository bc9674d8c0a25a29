"""The critical-path floor: the longest chain of dependent primitives, weighted by their latencies.

With every independent primitive run in parallel and none slowed by another, a query still takes
the sum of its primitives' isolated latencies along its longest dependent chain; that is the floor
an executor is measured against. Latencies come from a trace of the plan run one primitive at a
time (the framework's own order), so each was measured in isolation.
"""

from __future__ import annotations

from typing import Mapping

import networkx as nx

from teola.optimizer.ir import Graph
from teola.runtime.graph_scheduler import QueryTrace


def isolated_latencies(trace: QueryTrace) -> dict[str, float]:
    """Each primitive's latency in a trace (seconds)."""
    return {span.node: span.end - span.start for span in trace.spans}


def critical_path(graph: Graph, latencies: Mapping[str, float]) -> tuple[float, list[str]]:
    """The longest dependent chain of ``graph`` under ``latencies`` (absent nodes cost 0): its length and nodes."""
    dag = graph.to_networkx()
    best: dict[str, tuple[float, list[str]]] = {}
    for name in nx.topological_sort(dag):
        before = max((best[p] for p in dag.predecessors(name)), key=lambda b: b[0], default=(0.0, []))
        best[name] = (before[0] + latencies.get(name, 0.0), before[1] + [name])
    return max(best.values(), key=lambda b: b[0], default=(0.0, []))
