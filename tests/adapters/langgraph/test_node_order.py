"""Node depths: how many nodes follow each node to a graph's end (fixed edges, conditional targets, cycles)."""

from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from teola.adapters.langgraph.node_order import graph_depths, node_depths


class S(TypedDict, total=False):
    x: int


def _node(state: S) -> dict:
    return {}


def test_depth_is_the_longest_path_to_the_end():
    depths = node_depths({"__start__": ["a", "slow"], "a": ["b"], "b": ["join"], "slow": ["join"], "join": ["__end__"],
                          "__end__": []})
    assert depths == {"__end__": 0, "join": 1, "slow": 2, "b": 2, "a": 3, "__start__": 4}


def test_a_cycle_shares_one_depth_counting_all_its_nodes():
    depths = node_depths({"__start__": ["agent"], "agent": ["tools", "__end__"], "tools": ["agent"], "__end__": []})
    assert depths["agent"] == depths["tools"] == 2
    assert depths["__start__"] == 3


def test_a_compiled_graph_draws_its_conditional_targets():
    builder = StateGraph(S)
    for name in ("route", "short", "long1", "long2"):
        builder.add_node(name, _node)
    builder.add_edge(START, "route")
    builder.add_conditional_edges("route", lambda s: "short", ["short", "long1"])
    builder.add_edge("long1", "long2")
    builder.add_edge("long2", END)
    builder.add_edge("short", END)
    depths = graph_depths(builder.compile())
    assert {n: depths[n] for n in ("route", "short", "long1", "long2")} == {"route": 3, "short": 1, "long1": 2,
                                                                          "long2": 1}


def test_a_graph_that_cannot_draw_itself_has_no_depths():
    class Undrawable:
        def get_graph(self):
            raise RuntimeError("no drawing")

    assert graph_depths(Undrawable()) == {}
    assert graph_depths(None) == {}
