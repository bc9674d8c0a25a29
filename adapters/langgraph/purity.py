"""Which nodes of a LangGraph graph Teola may start before LangGraph would: the rule, in one place.

Starting a node early means running it on the state as it stands while its step's siblings still
run, and running it again if one of them then writes what it read. That is only allowed for a node
whose run leaves nothing behind but its return value (a *pure* node). So:

- a node the user marks ``side_effects`` never starts early (it runs when and as LangGraph runs it);
- a node the user marks pure (``optimize(graph, pure=[...])``, or its function decorated with
  ``teola_integrations.langgraph.pure``) may;
- so may, unmarked, a node that is an LCEL runnable built only of prompts, chat models/LLMs, output
  parsers and retrievers (they read their input and return a value);
- any other node (a plain function, a tool node, an agent) is assumed to have side effects;
- whatever the marks, a node that holds a subgraph or is a ``defer=True`` join never starts early:
  a subgraph checkpoints and may interrupt, and a deferred node runs when nothing else is left, which
  only LangGraph's loop knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, TypeVar

from langchain_core.language_models import BaseLanguageModel
from langchain_core.output_parsers import BaseOutputParser
from langchain_core.prompts import BasePromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableParallel, RunnableSequence

from teola.adapters.langgraph import compat

PURE_MARK = "__teola_pure__"
F = TypeVar("F", bound=Callable[..., Any])


def mark_pure(func: F) -> F:
    """Mark ``func`` (a node's function) as pure: it reads its input and returns its update, no more."""
    setattr(func, PURE_MARK, True)
    return func


@dataclass(frozen=True)
class EarlyStartPolicy:
    """The nodes of one graph that may start early, and why the others may not; and every node's depth
    (``node_order``: how many nodes follow it to the graph's end), which orders its engine work."""

    nodes: Mapping[str, Any]
    early: frozenset[str]
    reasons: Mapping[str, str]
    depths: Mapping[str, int] = field(default_factory=dict)


def _is_pure_runnable(runnable: Runnable) -> bool:
    if isinstance(runnable, (BasePromptTemplate, BaseLanguageModel, BaseOutputParser, BaseRetriever)):
        return True
    if isinstance(runnable, RunnableSequence):
        return all(_is_pure_runnable(step) for step in runnable.steps)
    if isinstance(runnable, RunnableParallel):
        return all(_is_pure_runnable(step) for step in runnable.steps__.values())
    return False


def _marked_pure(bound: Runnable) -> bool:
    funcs = compat.node_functions(bound)
    return bool(funcs) and all(getattr(f, PURE_MARK, False) for f in funcs)


def _reason_not_early(
    name: str, node: Any, specs: Mapping[str, Any], pure: set[str], side_effects: set[str], assume_pure: bool
) -> str | None:
    if name in side_effects:
        return "marked side_effects"
    if compat.holds_subgraph(node):
        return "holds a subgraph"
    if compat.is_deferred(node, specs):
        return "is a defer=True join"
    if assume_pure or name in pure or _marked_pure(node.bound) or _is_pure_runnable(node.bound):
        return None
    return "may have side effects (mark it pure if it only reads its state and returns its update)"


def early_start_policy(
    nodes: Mapping[str, Any],
    specs: Mapping[str, Any],
    pure: Iterable[str] = (),
    side_effects: Iterable[str] = (),
    assume_pure: bool = False,
    depths: Mapping[str, int] | None = None,
) -> EarlyStartPolicy:
    """The policy for a compiled graph's ``nodes`` and channel ``specs`` (``graph.nodes``,
    ``graph.channels``) and the user's marks; ``assume_pure`` takes every unmarked node as pure
    (a stress mode for test suites: it runs the early-start machinery on every graph). ``depths``
    are the nodes' depths (``node_order.graph_depths``), if known.

    Raises ``ValueError`` for a mark naming no node of the graph, or a node marked both ways."""
    pure, side_effects = set(pure), set(side_effects)
    unknown = (pure | side_effects) - set(nodes)
    if unknown:
        raise ValueError(
            f"teola: no node named {sorted(unknown)} in this graph (its nodes: {sorted(nodes)}); "
            "pure= and side_effects= take node names as given to add_node"
        )
    if pure & side_effects:
        raise ValueError(f"teola: nodes {sorted(pure & side_effects)} are marked both pure and side_effects")
    reasons = {
        name: reason
        for name, node in nodes.items()
        if not compat.is_internal_node(name) and (reason := _reason_not_early(name, node, specs, pure, side_effects, assume_pure))
    }
    early = frozenset(n for n in nodes if not compat.is_internal_node(n) and n not in reasons)
    return EarlyStartPolicy(nodes, early, reasons, depths or {})
