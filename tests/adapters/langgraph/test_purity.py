"""Which nodes may start early: the user's marks, pure LCEL chains, and what never may."""

from operator import add
from typing import Annotated, TypedDict

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langgraph.graph import START, StateGraph

from teola.adapters.langgraph.purity import early_start_policy, mark_pure


class S(TypedDict, total=False):
    x: Annotated[list, add]


def graph():
    sub = StateGraph(S)
    sub.add_node("inner", lambda s: {"x": [1]})
    sub.add_edge(START, "inner")
    builder = StateGraph(S)
    builder.add_node("plain", lambda s: {"x": [1]})
    builder.add_node("marked", mark_pure(lambda s: {"x": [2]}))
    builder.add_node("chain", PromptTemplate.from_template("{x}") | StrOutputParser())
    builder.add_node("sub", sub.compile())
    builder.add_node("deferred", lambda s: {"x": [3]}, defer=True)
    for name in ("plain", "marked", "chain", "sub", "deferred"):
        builder.add_edge(START, name)
    return builder.compile()


def test_marked_functions_and_lcel_chains_are_pure_and_the_rest_is_not():
    g = graph()
    policy = early_start_policy(g.nodes, g.channels)
    assert policy.early == {"marked", "chain"}
    assert "side effects" in policy.reasons["plain"]
    assert policy.reasons["sub"] == "holds a subgraph" and policy.reasons["deferred"] == "is a defer=True join"


def test_the_users_marks_win_but_never_over_subgraphs_and_defer():
    g = graph()
    policy = early_start_policy(g.nodes, g.channels, pure=["plain", "sub"], side_effects=["chain"])
    assert policy.early == {"marked", "plain"}
    assert policy.reasons["chain"] == "marked side_effects"
    assert early_start_policy(g.nodes, g.channels, assume_pure=True).early == {"plain", "marked", "chain"}


def test_bad_marks_say_what_is_wrong():
    g = graph()
    with pytest.raises(ValueError, match="no node named"):
        early_start_policy(g.nodes, g.channels, pure=["nope"])
    with pytest.raises(ValueError, match="both pure and side_effects"):
        early_start_policy(g.nodes, g.channels, pure=["plain"], side_effects=["plain"])


def test_the_private_names_teola_uses_are_checked(monkeypatch):
    from langgraph.pregel import _runner

    from teola.adapters.langgraph import compat

    assert compat.missing_internals() == []
    monkeypatch.delattr(_runner, "arun_with_retry")
    assert compat.missing_internals() == ["langgraph.pregel._runner.arun_with_retry"]
