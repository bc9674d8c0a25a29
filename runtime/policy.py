"""Scheduling policies: the order in which engines serve the primitives of every query in flight.

A policy ranks a plan's primitives once (``ranks``); each request then carries the priority
``(query priority, rank)``, lower first, and every engine scheduler orders by it: the batching
schedulers pick their next batch by it, the LLM scheduler hands it to vLLM's priority scheduler
(``vllm_priority``). The runtime holds one policy (``Runtime(policy=...)``); the default is the
paper's topology-aware order.
"""

from __future__ import annotations

import abc

import networkx as nx

from teola.optimizer.ir import Graph
from teola.runtime.requests import Priority


class SchedulingPolicy(abc.ABC):
    """Ranks a plan's primitives: lower ranks are served first among a query's equals."""

    @abc.abstractmethod
    def ranks(self, plan: Graph) -> dict[str, int]:
        """Every node's rank within its query."""

    def priority(self, query_priority: int, rank: int) -> Priority:
        """The priority a request of a primitive of ``rank`` carries: query first, then rank."""
        return (query_priority, rank)


class CriticalPathFirst(SchedulingPolicy):
    """Work farthest from an answer first: a primitive's rank is minus the length of the longest
    path from it to a node the outputs read (the paper's topology-aware batching)."""

    def ranks(self, plan: Graph) -> dict[str, int]:
        return {name: -depth for name, depth in depths_to_outputs(plan).items()}


class ArrivalOrder(SchedulingPolicy):
    """Every primitive of a query alike: engines serve queries by priority, then as they come."""

    def ranks(self, plan: Graph) -> dict[str, int]:
        return {node.name: 0 for node in plan}


def depths_to_outputs(plan: Graph) -> dict[str, int]:
    """For every node, the number of edges on the longest path from it to a node the outputs read."""
    dag = plan.to_networkx()
    depths: dict[str, int] = {}
    for name in reversed(list(nx.topological_sort(dag))):
        depths[name] = max((depths[s] + 1 for s in dag.successors(name)), default=0)
    return depths


def vllm_priority(priority: Priority) -> int:
    """A request's (query priority, rank) as one vLLM priority (lower runs first): query first, then rank."""
    query, rank = priority
    return query * 10_000 + rank
