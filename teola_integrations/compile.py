"""One compile path for every framework: a module graph, lowered and optimized for a runtime."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from teola.optimizer.ir import Graph
from teola.optimizer.lowering import lower
from teola.optimizer.passes import NEEDS_COSTS, PASSES, REQUIRES, optimize_plan
from teola.runtime.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompiledGraph:
    """What Teola made of an app's module graph: its primitive graph, the passes that could run on
    its engines, and the plan they made of it."""

    module_graph: Graph
    primitive_graph: Graph
    passes: tuple[str, ...]
    plan: Graph


def usable_passes(primitives: Graph, runtime: Runtime, passes: Iterable[str]) -> tuple[str, ...]:
    """``passes`` less those whose engines in ``primitives`` lack what the pass needs (one log line each)."""
    usable = []
    for name in passes:
        need = REQUIRES.get(name)
        lacking = sorted({node.engine.name for node in primitives if need and node.engine.kind is need.kind
                          and node.engine.name in runtime.engines
                          and not need.holds(runtime.engines[node.engine.name].capabilities)})
        if lacking:
            log.info("teola: %s is left out: the engines %s offer no %s", name, lacking, need.what)
        else:
            usable.append(name)
    return tuple(usable)


def compile_graph(module_graph: Graph, runtime: Runtime, passes: Iterable[str] = PASSES) -> CompiledGraph:
    """Lower ``module_graph`` and run those of ``passes`` its engines allow; stage decomposition is
    sized by the costs of ``runtime``'s engines, each profiled once."""
    primitives = lower(module_graph)
    chosen = usable_passes(primitives, runtime, passes)
    engines = {node.engine.name for node in primitives}
    profile = runtime.cost_profile(engines) if NEEDS_COSTS & set(chosen) else {}
    return CompiledGraph(module_graph, primitives, chosen, optimize_plan(primitives, chosen, profile))
