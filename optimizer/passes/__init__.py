"""The optimization passes, each a pure function from a primitive graph to a new one.

``optimize_plan`` runs the chosen passes in the order that composes them: pruning first (it frees
the others to overlap work), then stage decomposition (it sizes sub-batches), prefill splitting,
and decoding pipelining (it streams into whatever sub-batches exist). ``REQUIRES`` says what a pass
needs of the engines it rewrites work for (a compile step leaves a pass out where they lack it);
stage decomposition alone needs the engines' measured costs (``NEEDS_COSTS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from teola.optimizer.cost_model import CostProfile
from teola.optimizer.ir import EngineKind, Graph
from teola.optimizer.passes.decompose_stages import decompose_stages
from teola.optimizer.passes.pipeline_decoding import pipeline_decoding
from teola.optimizer.passes.prune_dependencies import prune_dependencies
from teola.optimizer.passes.split_prefill import split_prefill

PASSES: tuple[str, ...] = ("prune", "decompose", "split_prefill", "pipeline_decoding")
NEEDS_COSTS = frozenset({"decompose"})


@dataclass(frozen=True)
class Requirement:
    """What a pass needs of every engine of ``kind`` in the graph: ``holds(capabilities)``, named ``what``."""

    kind: EngineKind
    what: str
    holds: Callable[[object], bool]


REQUIRES: Mapping[str, Requirement] = {
    "split_prefill": Requirement(EngineKind.LLM, "prefix reuse", lambda caps: caps.prefix_reuse),
    "pipeline_decoding": Requirement(EngineKind.LLM, "streaming", lambda caps: caps.streaming),
}


def optimize_plan(graph: Graph, passes: Iterable[str] = PASSES, profile: CostProfile | None = None) -> Graph:
    """Apply ``passes`` (names from ``PASSES``) to ``graph``; ``profile`` sizes stage decomposition."""
    return plan_stages(graph, passes, profile)[-1][1]


def plan_stages(graph: Graph, passes: Iterable[str] = PASSES,
                profile: CostProfile | None = None) -> list[tuple[str, Graph]]:
    """The graph as given (``"lowered"``), then after each chosen pass in the order they run."""
    chosen = set(passes)
    unknown = chosen - set(PASSES)
    if unknown:
        raise ValueError(f"unknown passes {sorted(unknown)}; choose from {PASSES}")
    steps = {"prune": prune_dependencies, "decompose": lambda g: decompose_stages(g, profile or {}),
             "split_prefill": split_prefill, "pipeline_decoding": pipeline_decoding}
    stages = [("lowered", graph)]
    for name in PASSES:
        if name in chosen:
            stages.append((name, steps[name](stages[-1][1])))
    return stages
