"""The optimization passes, each a pure function from a primitive graph to a new one.

``optimize_plan`` runs the chosen passes in the order that composes them: pruning first (it frees
the others to overlap work), then stage decomposition (it sizes sub-batches), prefill splitting,
and decoding pipelining (it streams into whatever sub-batches exist).
"""

from __future__ import annotations

from typing import Iterable

from teola.optimizer.cost_model import CostProfile
from teola.optimizer.ir import Graph
from teola.optimizer.passes.decompose_stages import decompose_stages
from teola.optimizer.passes.pipeline_decoding import pipeline_decoding
from teola.optimizer.passes.prune_dependencies import prune_dependencies
from teola.optimizer.passes.split_prefill import split_prefill

PASSES: tuple[str, ...] = ("prune", "decompose", "split_prefill", "pipeline_decoding")


def optimize_plan(graph: Graph, passes: Iterable[str] = PASSES, profile: CostProfile | None = None) -> Graph:
    """Apply ``passes`` (names from ``PASSES``) to ``graph``; ``profile`` sizes stage decomposition."""
    chosen = set(passes)
    unknown = chosen - set(PASSES)
    if unknown:
        raise ValueError(f"unknown passes {sorted(unknown)}; choose from {PASSES}")
    if "prune" in chosen:
        graph = prune_dependencies(graph)
    if "decompose" in chosen:
        graph = decompose_stages(graph, profile or {})
    if "split_prefill" in chosen:
        graph = split_prefill(graph)
    if "pipeline_decoding" in chosen:
        graph = pipeline_decoding(graph)
    return graph
