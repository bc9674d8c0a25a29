"""The executor switch on chains without engine parts: Teola's scheduler runs them, LangChain's
observable behaviour (results, run trees, errors, concurrency limits) stays (graph logic: fakes)."""

import asyncio
import threading
import time

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough, RunnableSequence
from langchain_core.tracers.context import collect_runs

from teola_integrations.langchain import executor
from teola_integrations.langchain.executor import is_teola_executor_enabled, teola_executor
from teola_integrations.tools.run_trees import langchain_run_tree


def _chain():
    model = FakeListChatModel(responses=["alpha"])  # one answer: concurrent calls cannot take each other's
    branch = ChatPromptTemplate.from_template("Say {topic}") | model | StrOutputParser()
    return RunnableParallel(first=branch, second=RunnablePassthrough.assign(n=lambda d: len(d["topic"]))) | RunnableLambda(
        lambda d: f"{d['first']}|{d['second']['n']}")


def _traced(chain, value, config=None):
    with collect_runs() as collector:
        output = chain.invoke(value, config)
    return output, langchain_run_tree(collector.traced_runs[0])


def test_same_output_and_run_tree_as_langchain():
    native_out, native_tree = _traced(_chain(), {"topic": "cats"}, {"tags": ["t"], "metadata": {"m": 1}, "run_name": "mine"})
    routed_before = executor.ROUTED["level"]
    with teola_executor():
        out, tree = _traced(_chain(), {"topic": "cats"}, {"tags": ["t"], "metadata": {"m": 1}, "run_name": "mine"})
    assert executor.ROUTED["level"] > routed_before  # the sequence and both parallels went through Teola
    assert out == native_out == "alpha|4"
    assert tree == native_tree
    assert tree[0][1] == "mine" and "t" in tree[0][3]


def test_async_and_batch_match_langchain():
    native = [asyncio.run(_chain().ainvoke({"topic": "dogs"})), _chain().batch([{"topic": "a"}, {"topic": "bb"}])]
    with teola_executor():
        routed = [asyncio.run(_chain().ainvoke({"topic": "dogs"})), _chain().batch([{"topic": "a"}, {"topic": "bb"}])]
    assert routed == native


def test_a_step_error_reaches_the_caller_as_itself_and_the_run_records_it():
    def fail(_):
        raise KeyError("no such thing")

    chain = RunnableLambda(lambda x: x) | RunnableLambda(fail)
    with teola_executor(), collect_runs() as collector:
        with pytest.raises(KeyError, match="no such thing"):
            chain.invoke(1)
    assert collector.traced_runs[0].error and "KeyError" in collector.traced_runs[0].error


def test_parallel_branches_overlap_and_max_concurrency_holds():
    running, peak, lock = [0], [0], threading.Lock()

    def slow(x):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return x

    parallel = RunnableParallel({f"k{i}": RunnableLambda(slow) for i in range(4)})
    with teola_executor():
        assert parallel.invoke(1) == {f"k{i}": 1 for i in range(4)}
        assert peak[0] > 1
        peak[0] = 0
        parallel.invoke(1, {"max_concurrency": 1})
    assert peak[0] == 1


def test_the_switch_restores_langchain_and_nests():
    assert not is_teola_executor_enabled()
    native_invoke = RunnableSequence.invoke
    with teola_executor():
        with teola_executor():
            assert RunnableSequence.invoke is not native_invoke
        assert is_teola_executor_enabled()
    assert RunnableSequence.invoke is native_invoke and not is_teola_executor_enabled()
