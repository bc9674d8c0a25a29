"""One compile path for every framework: a module graph, lowered and optimized for a runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from teola.optimizer.ir import Graph
from teola.optimizer.lowering import lower
from teola.optimizer.passes import PASSES, optimize_plan
from teola.runtime.runtime import Runtime


@dataclass(frozen=True)
class CompiledGraph:
    """What Teola made of an app's module graph: its primitive graph and the plan the passes made of it."""

    module_graph: Graph
    primitive_graph: Graph
    plan: Graph


def compile_graph(module_graph: Graph, runtime: Runtime, passes: Iterable[str] = PASSES) -> CompiledGraph:
    """Lower ``module_graph`` and run ``passes`` on it; stage decomposition is sized by the costs of
    ``runtime``'s engines, each profiled once."""
    primitives = lower(module_graph)
    passes = tuple(passes)
    engines = {node.engine.name for node in primitives}
    profile = runtime.cost_profile(engines) if "decompose" in passes else {}
    return CompiledGraph(module_graph, primitives, optimize_plan(primitives, passes, profile))
