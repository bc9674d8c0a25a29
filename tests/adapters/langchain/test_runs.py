"""The run tree of a traced chain's structure (sequences, parallels, assign, passthrough, itemgetter,
steps run as-is), as LangChain reports it natively (graph logic: fakes stand in for engines)."""

import asyncio
from operator import itemgetter

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from langchain_core.tracers.context import collect_runs

from teola_integrations.langchain import optimize
from teola_integrations.tools.run_trees import langchain_run_tree


def _upper(d: dict) -> str:
    return d["topic"].upper()


def _join(d: dict) -> str:
    return f"{d['first']}|{d['second']}|{d['n']}"


CHAINS = {
    "assign at the root": lambda: RunnablePassthrough.assign(n=lambda d: len(d["topic"])) | RunnableParallel(
        first=itemgetter("topic") | RunnableLambda(str.title), second=RunnableLambda(_upper),
        n=itemgetter("n"), keep=RunnablePassthrough()) | RunnableLambda(_join),
    "a parallel at the root": lambda: RunnableParallel(
        first=ChatPromptTemplate.from_template("Say {topic}") | FakeListChatModel(responses=["alpha"]) | StrOutputParser(),
        second=RunnablePassthrough.assign(n=lambda d: 1) | itemgetter("n")),
}


@pytest.mark.parametrize("name", CHAINS)
def test_steps_report_the_runs_they_report_natively(name):
    config = {"tags": ["t"], "metadata": {"m": 1}}
    trees = []
    for chain, ask in ((CHAINS[name](), "invoke"), (optimize(CHAINS[name]()), "invoke"),
                       (optimize(CHAINS[name]()), "ainvoke")):
        with collect_runs() as collector:
            out = chain.invoke({"topic": "cats"}, config) if ask == "invoke" else \
                asyncio.run(chain.ainvoke({"topic": "cats"}, config))
        trees.append((out, langchain_run_tree(collector.traced_runs[0])))
    native, teola, teola_async = trees
    assert len(native[1]) >= 6
    assert teola == native and teola_async == native
