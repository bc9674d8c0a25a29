"""Routing by a lambda: the graph it is traced into (LangChain's fake models stand in for engines),
and chains of real LangChain lambdas run through optimize() (no engine needed): the runnable the
function returns, its output, errors, recursion and run tree, as LangChain gives them."""

import asyncio
import logging

import networkx as nx
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tracers.context import collect_runs

from teola.adapters.langchain import read_runnable
from teola.adapters.langchain.routing import MOST_ROUTES, routing_why_not
from teola.optimizer.ir import ModuleKind, Ref
from teola_integrations.langchain import optimize
from teola_integrations.tools.run_trees import langchain_run_tree


def test_each_route_a_lambda_names_is_lowered_and_runs_only_after_the_function(fake_chat):
    model = fake_chat
    answer = ChatPromptTemplate.from_template("Answer: {question}") | model | StrOutputParser()
    explain = ChatPromptTemplate.from_template("Explain: {question}") | model | StrOutputParser()

    def route(x):
        return explain if "why" in x["question"] else answer

    graph = read_runnable({"question": lambda x: x["question"]} | RunnableLambda(route)).graph
    [function] = [n for n in graph if getattr(n.args, "label", None) == "route"]
    gates = [n for n in graph if getattr(n.args, "label", None) in ("route 0 chosen", "route 1 chosen")]
    assert [gate.inputs["chosen"] for gate in gates] == [Ref(function.name, "chosen")] * 2
    for gate in gates:  # each route's LLM call waits for its gate, and its prompt is not known before
        [call] = [n for n in graph if n.op is ModuleKind.GENERATE and nx.has_path(graph.to_networkx(), gate.name, n.name)]
        assert call.args.prefix is None


def test_a_lambda_naming_no_runnable_or_too_many_runs_as_is():
    plain = RunnableLambda(lambda x: x + 1)
    steps = [RunnableLambda(lambda x, i=i: x + i) for i in range(MOST_ROUTES + 1)]
    a, b, c, d, e, f, g, h, i = steps

    def many(x):
        return [a, b, c, d, e, f, g, h, i][x]

    assert not [n for n in read_runnable(plain).graph if n.args.label == "RunnableLambda output"]
    assert "names 9 runnables" in routing_why_not(RunnableLambda(many))
    assert not [n for n in read_runnable(RunnableLambda(many)).graph if n.args.label == "RunnableLambda output"]


def _router(log: list):
    """A routing lambda between a sequence of lambdas and a parallel, and a value or a runnable it builds."""
    shout = RunnableLambda(lambda x: x["text"].upper(), name="shout") | RunnableLambda(lambda s: s + "!")
    measure = RunnableParallel(length=lambda x: len(x["text"]), text=lambda x: x["text"])

    def route(x):
        log.append(x["kind"])
        if x["kind"] == "shout":
            return shout
        if x["kind"] == "measure":
            return measure
        if x["kind"] == "built":
            return RunnableLambda(lambda y: y["text"][::-1], name="reverse")
        return x["text"]

    return {"kind": lambda x: x["kind"], "text": lambda x: x["text"] * 2} | RunnableLambda(route) | \
        RunnableLambda(lambda v: f"<{v}>")


def _route_nodes(fast) -> list[str]:
    """The nodes that pick a routing lambda's output (none where no lambda was traced as routing)."""
    return [n.name for n in fast.module_graph if n.args.label == "RunnableLambda output"]


def _runs(chain, value, config=None):
    with collect_runs() as collector:
        output = chain.invoke(value, config)
    return output, langchain_run_tree(collector.traced_runs[0])


@pytest.mark.parametrize("kind", ["shout", "measure", "built", "plain"])
def test_the_runnable_the_function_returns_runs_with_langchains_output_and_run_tree(kind, caplog):
    native_log, teola_log = [], []
    native, fast = _router(native_log), optimize(_router(teola_log))
    assert len(_route_nodes(fast)) == 1
    value = {"kind": kind, "text": "ab"}
    with caplog.at_level(logging.INFO, logger="teola.adapters.langchain.routing"):
        assert _runs(fast, value) == _runs(native, value)
        assert asyncio.run(fast.ainvoke(value)) == native.invoke(value)
    assert teola_log == native_log[:1] * 2  # the function is called once per invocation, as natively
    told = [r.message for r in caplog.records if "does not name" in r.message]
    assert told == (["teola: route returned a runnable its function does not name (reverse); it runs as-is"]
                    if kind == "built" else [])
    native_stream, fast_stream = list(native.stream(value)), list(fast.stream(value))
    assert "".join(map(str, fast_stream)) == "".join(map(str, native_stream))


def test_a_routing_lambda_at_the_chains_root_runs_its_route_under_the_chains_run():
    upper = RunnableLambda(lambda x: x.upper(), name="upper")
    lower = RunnableLambda(lambda x: x.lower(), name="lower")

    def pick(x):
        return upper if x.startswith("u") else lower

    chain = RunnableLambda(pick)
    fast = optimize(chain)
    assert len(_route_nodes(fast)) == 1
    for value in ("up", "Down"):
        assert _runs(fast, value) == _runs(chain, value)
        assert asyncio.run(fast.ainvoke(value)) == chain.invoke(value)


@pytest.mark.parametrize("named", [True, False])
def test_a_route_back_to_the_lambda_recurses_as_natively_and_stops_at_the_recursion_limit(named):
    """The route is a sequence that ends in the lambda itself: named by the function (traced once,
    its inner lambda then runs as-is) or built as it runs."""

    def countdown(n):
        if n <= 0:
            return n
        return step_down if named else RunnableLambda(lambda m: m - 1) | loop

    loop = RunnableLambda(countdown)
    step_down = RunnableLambda(lambda m: m - 1) | loop
    chain = RunnableLambda(lambda n: n) | loop
    fast = optimize(chain)
    assert len(_route_nodes(fast)) == 1  # the lambda inside its own route runs as-is
    assert _runs(fast, 3) == _runs(chain, 3)
    for app in (chain, fast):
        with pytest.raises(RecursionError, match="Recursion limit reached"):
            app.invoke(30, {"recursion_limit": 5})


def test_an_async_function_is_awaited_in_an_async_invocation():
    upper = RunnableLambda(lambda x: x.upper(), name="upper")

    def pick(x):
        return upper

    async def apick(x):
        return upper if x == "a" else "none"

    chain = RunnableLambda(lambda x: x) | RunnableLambda(pick, afunc=apick)
    fast = optimize(chain)
    assert asyncio.run(fast.ainvoke("b")) == asyncio.run(chain.ainvoke("b")) == "none"
    assert fast.invoke("b") == chain.invoke("b") == "B"


def test_a_failing_function_or_route_raises_its_own_error_with_the_native_run_tree():
    def fails(x):
        raise ValueError(f"cannot answer {x!r}")

    broken = RunnableLambda(fails)

    def route(x):
        if x == "route":
            return broken
        raise KeyError(x)

    chain = RunnableLambda(lambda x: x) | RunnableLambda(route)
    for value, error in (("route", ValueError), ("other", KeyError)):
        trees = []
        for app in (chain, optimize(chain)):
            with pytest.raises(error), collect_runs() as collector:
                app.invoke(value)
            trees.append(langchain_run_tree(collector.traced_runs[0]))
        assert trees[1] == trees[0]
