"""``with_fallbacks`` and ``with_retry``: chains of real LangChain lambdas run through optimize() (no
engine needed): the try LangChain would return from, the error it would raise, and its run tree."""

import asyncio
import logging

import pytest
from langchain_core.runnables import RunnableGenerator, RunnableLambda
from langchain_core.tracers.context import collect_runs

from teola.adapters.langchain import read_runnable
from teola_integrations.langchain import optimize
from teola_integrations.tools.run_trees import langchain_run_tree


def _fails(error: type[Exception]):
    def fail(x):
        raise error(f"no {x}")

    return RunnableLambda(fail)


def _plus(n: int):
    return RunnableLambda(lambda x: x + n)


def _in_a_chain(step):
    return _plus(0) | step | _plus(100)


CHAINS = {
    "the runnable fails, its fallback answers": _in_a_chain(_fails(ValueError).with_fallbacks([_plus(1)])),
    "the runnable answers, no fallback runs": _in_a_chain(_plus(5).with_fallbacks([_plus(1)])),
    "every one fails: the first error": _in_a_chain(_fails(ValueError).with_fallbacks([_fails(TypeError)])),
    "an error not handled stops it": _in_a_chain(_fails(KeyError).with_fallbacks([_plus(1)], exceptions_to_handle=(ValueError,))),
    "the second fallback answers": _in_a_chain(_fails(ValueError).with_fallbacks([_fails(ValueError), _plus(2)])),
    "as the whole chain": _fails(ValueError).with_fallbacks([_plus(1) | _plus(2)]),
    "under with_config": _in_a_chain(_fails(ValueError).with_fallbacks([_plus(1)]).with_config(run_name="safe", tags=["t"])),
}


def _outcome(invoke):
    with collect_runs() as collector:
        try:
            output = invoke(1)
        except Exception as exc:  # the error is part of what is compared
            output = repr(exc)
    return output, [langchain_run_tree(run) for run in collector.traced_runs]


@pytest.mark.parametrize("case", CHAINS)
def test_fallbacks_answer_fail_and_report_their_runs_as_natively(case):
    chain = CHAINS[case]
    fast = optimize(chain)
    native = _outcome(chain.invoke)
    assert _outcome(fast.invoke) == native
    assert _outcome(lambda v: asyncio.run(fast.ainvoke(v))) == native
    assert len(native[1][0]) >= 3


def _flaky(failures: int, error: type[Exception] = ValueError):
    """A step that fails its first ``failures`` calls, then adds 1 (each chain built gets its own count)."""
    calls = []

    def flaky(x):
        calls.append(x)
        if len(calls) <= failures:
            raise error(f"call {len(calls)} failed")
        return x + 1

    return RunnableLambda(flaky)


NO_WAIT = {"wait_exponential_jitter": False}
RETRIES = {
    "the third attempt answers": lambda: _in_a_chain(_flaky(2).with_retry(**NO_WAIT)),
    "the first attempt answers": lambda: _in_a_chain(_flaky(0).with_retry(**NO_WAIT)),
    "every attempt fails: the last error": lambda: _in_a_chain(_flaky(5).with_retry(**NO_WAIT)),
    "an error not retried stops it": lambda: _in_a_chain(
        _flaky(1, KeyError).with_retry(retry_if_exception_type=(ValueError,), **NO_WAIT)),
    "after tenacity's waits": lambda: _in_a_chain(_flaky(2).with_retry(
        exponential_jitter_params={"max": 0.05, "jitter": 0.01})),
    "a sequence retried, as the whole chain": lambda: (_plus(1) | _flaky(1)).with_retry(stop_after_attempt=2, **NO_WAIT),
    "under with_config": lambda: _in_a_chain(_flaky(1).with_retry(**NO_WAIT).with_config(run_name="sturdy")),
}


@pytest.mark.parametrize("case", RETRIES)
def test_retries_answer_fail_and_report_their_runs_as_natively(case):
    native = _outcome(RETRIES[case]().invoke)
    assert _outcome(optimize(RETRIES[case]()).invoke) == native
    fast = optimize(RETRIES[case]())
    assert _outcome(lambda v: asyncio.run(fast.ainvoke(v))) == native
    assert len(native[1][0]) >= 3


def test_a_retry_of_unbounded_attempts_runs_as_is():
    step = _flaky(0).with_retry(stop_after_attempt=0)
    reading = read_runnable(_plus(0) | step)
    assert "flaky" in [n.args.label for n in reading.graph]


def test_a_fallback_that_reads_the_error_runs_as_is():
    step = _fails(ValueError).with_fallbacks([RunnableLambda(lambda d: repr(d["error"]))], exception_key="error")
    reading = read_runnable(RunnableLambda(lambda x: {"x": x}) | step)
    assert [n.args.label for n in reading.graph if n.args.label == "RunnableWithFallbacks"] == ["RunnableWithFallbacks"]


def test_each_try_after_the_first_waits_on_the_one_before_and_nothing_waits_on_the_last():
    reading = read_runnable(_in_a_chain(_flaky(0).with_retry(stop_after_attempt=3, **NO_WAIT)))
    gates = [n for n in reading.graph if getattr(n.args, "label", "") == "retry needed"]
    assert len(gates) == 2
    readers = {source.node for n in reading.graph for source in n.inputs.values() if hasattr(source, "node")}
    assert all(gate.name in readers for gate in gates)


def _words(chunks):
    """A streaming step: each number as three chunks."""
    for x in chunks:
        yield from (str(x), " then ", str(x + 1))


def _streamed(stream):
    with collect_runs() as collector:
        try:
            chunks = list(stream(1))
        except Exception as exc:  # the error is part of what is compared
            chunks = repr(exc)
    return chunks, [langchain_run_tree(run) for run in collector.traced_runs]


def _astreamed(chain):
    async def chunks(value):
        return [chunk async for chunk in chain.astream(value)]

    return lambda value: asyncio.run(chunks(value))


def test_a_chain_with_fallbacks_or_retries_streams_as_langchain_streams_it(caplog):
    """LangChain's stream does not retry (a retry's stream is its bound runnable's) and picks a
    fallback by its first chunk, then streams it: such a chain streams natively, said once; its
    invoke stays on Teola, retrying."""
    fallback = _plus(0) | _fails(ValueError).with_fallbacks([RunnableGenerator(_words)])
    fast = optimize(fallback)
    with caplog.at_level(logging.WARNING, logger="teola"):
        streamed = _streamed(fallback.stream)
        assert _streamed(fast.stream) == streamed
        assert _streamed(_astreamed(fast)) == _streamed(_astreamed(fallback))
    assert streamed[0] == ["1", " then ", "2"]
    told = [r.getMessage() for r in caplog.records if "stream" in r.getMessage()]
    assert len(told) == 1 and "streams as LangChain streams it" in told[0] and "with_fallbacks" in told[0]

    def retried():
        return _plus(0) | _flaky(1).with_retry(stop_after_attempt=2, **NO_WAIT)

    streamed = _streamed(retried().stream)
    assert streamed[0] == "ValueError('call 1 failed')"  # not retried
    assert _streamed(optimize(retried()).stream) == streamed
    assert optimize(retried()).invoke(1) == retried().invoke(1) == 2
