"""``.with_config`` bindings: traced through (their steps' runs take the config as RunnableBinding
merges it), or run as-is where the binding changes how its step runs; chains of real LangChain
lambdas through optimize() (no engine needed)."""

import asyncio

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.tracers.context import collect_runs

from teola.adapters.langchain import read_runnable
from teola.adapters.langchain.steps import config_binding, unbind
from teola.optimizer.ir import ModuleKind
from teola_integrations.langchain import optimize
from teola_integrations.tools.run_trees import langchain_run_metadata, langchain_run_tree


def test_only_bindings_of_names_tags_and_metadata_are_traced_through():
    step = RunnableLambda(lambda x: x)
    assert config_binding(step.with_config(run_name="a", tags=["t"], metadata={"k": 1})) == {
        "run_name": "a", "tags": ["t"], "metadata": {"k": 1}}
    assert config_binding(step.with_config(max_concurrency=2)) is None
    assert config_binding(step.bind(stop=["\n"])) is None
    assert config_binding(step.with_retry()) is None
    assert config_binding(step) is None
    chain, configs = unbind(step.with_config(run_name="inner").with_config(tags=["outer"]))
    assert chain is step and configs == ({"run_name": "inner", "tags": ["outer"]},)


def test_an_llm_call_under_with_config_is_still_lowered(fake_chat):
    model = fake_chat
    answer = (ChatPromptTemplate.from_template("Q: {question}") | model | StrOutputParser()).with_config(run_name="answer")
    reading = read_runnable({"question": lambda x: x} | answer)
    assert [n.op for n in reading.graph if n.op is ModuleKind.GENERATE] == [ModuleKind.GENERATE]
    assert read_runnable(answer).root_configs == ({"run_name": "answer"},)


def _bound_chain():
    inner = (RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 3)).with_config(
        run_name="inner", tags=["inner"], metadata={"level": "inner"})
    assign = RunnablePassthrough.assign(y=RunnableLambda(lambda x: x["x"]) | inner).with_config(run_name="assign_y")
    return (assign | RunnableLambda(lambda d: d["y"])).with_config(run_name="root", tags=["root"], metadata={"app": 1})


@pytest.mark.parametrize("config", [None, {"tags": ["user"], "metadata": {"app": 2}}, {"run_name": "mine"}])
def test_bound_steps_runs_take_their_names_tags_and_metadata_as_natively(config):
    chain = _bound_chain()
    fast = optimize(chain)
    seen = []
    for invoke in (lambda: chain.invoke({"x": 2}, config), lambda: fast.invoke({"x": 2}, config),
                   lambda: asyncio.run(fast.ainvoke({"x": 2}, config))):
        with collect_runs() as collector:
            output = invoke()
        [root] = collector.traced_runs
        seen.append((output, langchain_run_tree(root), langchain_run_metadata(root)))
    assert seen[0][0] == 9
    assert seen[1] == seen[0] and seen[2] == seen[0]
    assert ("inner" in {row[1] for row in seen[0][2]}) and seen[0][2][0][1] == (config or {}).get("run_name", "root")
    assert any(("level", "inner") in row[2] for row in seen[0][2])
