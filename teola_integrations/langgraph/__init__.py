"""Teola for LangGraph: a node starts when what it reads is final, not when its superstep ends.

``optimize(compiled_graph)`` returns a compiled graph of the same class (``invoke``, ``ainvoke``,
``batch``, ``abatch``, ``stream``/``astream`` with every stream mode, config, callbacks,
checkpointers, ``get_graph()``...) whose pure nodes may start while the previous step's slow
siblings still run; ``enable()`` (or ``with teola_langgraph():``) does the same for every compiled
graph in the process. LangGraph's own loop still applies the writes, checkpoints and streams, so the
final state and every streamed chunk are LangGraph's (see ``teola.adapters.langgraph.early_start``
for the rule, and ``teola.adapters.langgraph.purity`` for which nodes are pure and how to mark them).

The engine work the nodes send to Teola's shared engines (its model, embedding and vector store
classes, the plans of chains run through Teola's executor) is ordered by the graph's critical path:
a node with more of the graph still behind it is served first, across all the graphs in flight
(``teola.adapters.langgraph.node_order``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from langgraph.pregel import Pregel

from teola.adapters.langgraph import compat
from teola.adapters.langgraph.early_start import EARLY, EarlyStartHooks
from teola.adapters.langgraph.node_order import graph_depths
from teola.adapters.langgraph.purity import EarlyStartPolicy, early_start_policy, mark_pure

__all__ = ["EARLY", "disable", "enable", "optimize", "pure", "teola_langgraph"]

log = logging.getLogger(__name__)
pure = mark_pure
_lock = threading.Lock()
_optimized: dict[int, tuple[weakref.ref, EarlyStartPolicy]] = {}
_switch = {"on": False, "assume_pure": False}
_told: set[Any] = set()
_switch_depths: weakref.WeakKeyDictionary[Pregel, dict[str, int]] = weakref.WeakKeyDictionary()


def _tell_once(graph_name: str, policy: EarlyStartPolicy) -> None:
    """One log line per graph: which nodes may start early, and why the others may not."""
    key = id(policy.nodes)
    if key in _told:
        return
    _told.add(key)
    others = "; ".join(f"{n}: {r}" for n, r in sorted(policy.reasons.items())) or "none"
    if policy.early:
        log.info("teola: in %s, %s may start before their superstep; the others run in it (%s)",
                 graph_name, sorted(policy.early), others)
    else:
        log.info("teola: no node of %s may start early; it runs as LangGraph runs it (%s)", graph_name, others)


def _policy_for(loop: Any) -> EarlyStartPolicy | None:
    nodes = compat.loop_nodes(loop)
    entry = _optimized.get(id(nodes))
    if entry is not None and entry[0]() is not None and entry[1].nodes is nodes:
        return entry[1]
    if _switch["on"]:
        policy = early_start_policy(nodes, compat.loop_specs(loop), assume_pure=_switch["assume_pure"],
                                    depths=_depths_of(compat.loop_graph(loop)))
        _tell_once("a graph", policy)
        return policy
    return None


def _depths_of(graph: Pregel | None) -> dict[str, int]:
    """``graph_depths`` of a graph run under the switch, drawn once per graph."""
    if graph is None:
        return {}
    if graph not in _switch_depths:
        _switch_depths[graph] = graph_depths(graph)
    return _switch_depths[graph]


def _install() -> bool:
    """Put Teola's hooks into LangGraph's loop, if this langgraph has what they use (else say so, once)."""
    with _lock:
        missing = compat.missing_internals()
        if missing:
            if "unsupported" not in _told:
                _told.add("unsupported")
                log.warning(
                    "teola: langgraph %s lacks %s, which Teola's early starts use (written against %s.x); graphs "
                    "run as LangGraph runs them. Install langgraph %s.x for early starts.",
                    compat.version(), ", ".join(missing), compat.TESTED, compat.TESTED,
                )
            return False
        compat.install(EarlyStartHooks(_policy_for))
        return True


def optimize(graph: Pregel, *, pure: Iterable[str] = (), side_effects: Iterable[str] = (),
             critical_path: bool = True) -> Pregel:
    """The compiled ``graph``, as a new compiled graph of the same class whose pure nodes start as
    soon as what they read is final.

    ``pure`` names nodes that only read their state and return their update (also marked with the
    ``pure`` decorator on their function); ``side_effects`` names nodes that must run only when
    LangGraph would run them, even an LCEL chain Teola takes as pure by default. ``critical_path``
    orders the nodes' engine work by how much of the graph follows each node (``False``: in arrival
    order, every node alike). The original ``graph`` is left as it was."""
    if not isinstance(graph, Pregel):
        raise TypeError(
            f"teola: optimize() takes a compiled LangGraph graph (StateGraph(...).compile(), a Pregel), "
            f"not {type(graph).__name__}"
        )
    optimized = graph.copy({"nodes": dict(graph.nodes)})
    policy = early_start_policy(optimized.nodes, optimized.channels, pure, side_effects,
                                depths=graph_depths(optimized) if critical_path else None)
    if not _install():
        return optimized
    key = id(optimized.nodes)
    _optimized[key] = (weakref.ref(optimized, lambda _: _optimized.pop(key, None)), policy)
    _tell_once(graph.get_name(), policy)
    return optimized


def enable(*, assume_pure: bool = False) -> None:
    """Switch early starts on for every compiled graph run in this process (its pure nodes: LCEL
    chains of prompts, models, parsers and retrievers, and functions marked ``pure``).

    ``assume_pure`` takes every node as pure unless it holds a subgraph or is a ``defer=True`` join:
    a stress mode for running a test suite through the early-start machinery (nodes with side effects
    may then run early or twice)."""
    if _install():
        _switch.update(on=True, assume_pure=assume_pure)


def disable() -> None:
    """Switch ``enable()`` off (graphs returned by ``optimize`` stay optimized)."""
    _switch["on"] = False


@contextmanager
def teola_langgraph() -> Iterator[None]:
    """``enable()`` for the duration of a ``with`` block."""
    was = dict(_switch)
    enable()
    try:
        yield
    finally:
        _switch.update(was)
