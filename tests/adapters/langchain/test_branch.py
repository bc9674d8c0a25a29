"""RunnableBranch: the graph it is traced into (LangChain's fake models stand in for engines), and
chains of real LangChain lambdas and branches run through optimize() (no engine needed): the branch
LangChain picks, its output, its errors and its run tree."""

import asyncio
import operator

import networkx as nx
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableBranch, RunnableLambda
from langchain_core.tracers.context import collect_runs

from teola.adapters.langchain import read_runnable
from teola.optimizer.ir import ModuleKind
from teola_integrations.langchain import optimize
from teola_integrations.tools.run_trees import langchain_run_tree


def test_each_branchs_llm_call_is_lowered_and_runs_only_after_its_condition(fake_chat):
    model = fake_chat
    answer = ChatPromptTemplate.from_template("Answer: {question}") | model | StrOutputParser()
    explain = ChatPromptTemplate.from_template("Explain: {question}") | model | StrOutputParser()
    chain = RunnableBranch((lambda x: "why" in x["question"], explain), answer)
    reading = read_runnable(chain)
    generates = [n.name for n in reading.graph if n.op is ModuleKind.GENERATE]
    [condition] = [n.name for n in reading.graph if n.op is ModuleKind.CALL and n.args.label == "RunnableLambda"]
    assert len(generates) == 2 and len(reading.lowered) == 2
    dag = reading.graph.to_networkx()
    assert all(nx.has_path(dag, condition, g) for g in generates)
    assert all(reading.graph[g].args.prefix is None for g in generates)  # not known before the branch is picked


def _calls(log: list, name: str, fn):
    def call(x):
        log.append(name)
        return fn(x)

    return RunnableLambda(call, name=name)


def _nested(log: list):
    """A branch inside a branch, a dict branch, behind a parallel step and before a last step."""
    inner = RunnableBranch((_calls(log, "big?", lambda x: x["n"] > 10), RunnableLambda(lambda x: "big")),
                           RunnableLambda(lambda x: "mid"))
    branch = RunnableBranch((_calls(log, "negative?", lambda x: x["n"] < 0), RunnableLambda(lambda x: "negative")),
                            (_calls(log, "zero?", lambda x: x["n"] == 0), {"zero": operator.itemgetter("n")}),
                            inner)
    return {"n": lambda x: x["n"] * 2, "label": lambda x: "n"} | branch | RunnableLambda(lambda v: f"<{v}>")


@pytest.mark.parametrize("n, asked", [(-1, ["negative?"]), (0, ["negative?", "zero?"]),
                                      (3, ["negative?", "zero?", "big?"]), (20, ["negative?", "zero?", "big?"])])
def test_the_branch_langchain_picks_runs_with_its_run_tree_and_no_later_condition_is_asked(n, asked):
    native_log, teola_log = [], []
    native, fast = _nested(native_log), optimize(_nested(teola_log))
    runs = []
    for chain, log in ((native, native_log), (fast, teola_log)):
        with collect_runs() as collector:
            output = chain.invoke({"n": n})
        runs.append((output, langchain_run_tree(collector.traced_runs[0]), list(log)))
    assert runs[1] == runs[0]
    assert runs[0][2] == asked
    assert asyncio.run(fast.ainvoke({"n": n})) == runs[0][0]


def test_a_failing_condition_raises_its_own_error_with_the_native_run_tree():
    def fails(x):
        raise ValueError(f"cannot route {x!r}")

    chain = RunnableBranch((RunnableLambda(fails), RunnableLambda(lambda x: "a")), RunnableLambda(lambda x: "b"))
    trees = []
    for app in (chain, optimize(chain)):
        with pytest.raises(ValueError, match="cannot route 1"), collect_runs() as collector:
            app.invoke(1)
        trees.append(langchain_run_tree(collector.traced_runs[0]))
    assert trees[1] == trees[0]
