"""Steps that try runnables until one succeeds: ``with_fallbacks`` (the runnable, then each fallback)
and ``with_retry`` (the bound runnable again, after a wait). Each try is traced as any step is (an
LLM call or a retrieval in it runs on the engines) and runs only where the try before it failed
with an error the step handles; the output is the first success, else the step's error.

A failure is a value here: the node after each try catches it (``FnArgs.catches``), so the query
goes on to the next try, and the failed try's runs report its error, as natively.
``RunnableWithFallbacks`` hands its runnables the config it was itself given, so their runs are
siblings of its own, with its tag (langchain-core 1.8): they are traced beside it, not under it.
``RunnableRetry`` runs each attempt under its own run, tagged ``retry:attempt:N`` from the second."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable

from langchain_core.runnables import RunnableWithFallbacks
from tenacity import RetryCallState, wait_exponential_jitter

from teola.adapters.langchain.compat import RunnableRetry
from teola.adapters.langchain.runs import StepRun, region_values
from teola.adapters.langchain.steps import BoundTag, ChildTag, Traced, Value, binds_only_traced_config
from teola.optimizer.ir import ModuleKind, Node, Ref, Region
from teola.optimizer.ops import FnArgs
from teola.optimizer.values import SKIPPED, Failed

if TYPE_CHECKING:
    from teola.adapters.langchain.tracer import Tracer

MOST_ATTEMPTS = 10  # a retry of more attempts (or of unbounded ones) runs as-is
Handles = Callable[[BaseException], bool]


def fallbacks_why_not(step: RunnableWithFallbacks) -> str | None:
    """Why ``step`` runs as-is, or None."""
    if step.exception_key is not None:
        return "it hands each fallback the error before it (exception_key)"
    return None


def retry_why_not(step: RunnableRetry) -> str | None:
    """Why ``step`` runs as-is, or None."""
    if not isinstance(step.max_attempt_number, int) or not 0 < step.max_attempt_number <= MOST_ATTEMPTS:
        return f"it makes {step.max_attempt_number!r} attempts (Teola traces 1 to {MOST_ATTEMPTS})"
    if not binds_only_traced_config(step):
        return "it binds call arguments or a config beyond run_name, tags and metadata"
    return None


def trace_fallbacks(tracer: "Tracer", step: RunnableWithFallbacks, value: Traced, tag: ChildTag,
                    own_run: bool = True) -> Value:
    """``step`` applied to ``value``: its runnables in order, each given the step's input where the
    one before it failed with an error of ``exceptions_to_handle``; its own run (tagged ``tag``;
    none where the step is the chain, whose run is the invocation's) ends with the first output or
    fails with the first error."""
    handles = _instance_of(step.exceptions_to_handle)
    given = tracer.materialize(value)
    outputs: list[Value] = []
    tried = given
    for runnable in step.runnables:
        if outputs:
            tried = _after_failure(tracer, given, outputs[-1], handles, None, "fallback needed")
        outputs.append(tracer.materialize(tracer.trace(runnable, tried, tag)))
    output = _first_success(tracer, outputs, handles, first_error=True, label="RunnableWithFallbacks output")
    if own_run:
        _add_run(tracer, step, value, tag, output)
    return output


def trace_retry(tracer: "Tracer", step: RunnableRetry, value: Traced, tag: ChildTag, own_run: bool = True) -> Value:
    """``step`` applied to ``value``: up to ``max_attempt_number`` attempts of its bound runnable, each
    after the one before failed with a retried error and the step's wait (exponential jitter, as
    tenacity draws it); its own run (none where the step is the chain) ends with the first output
    or fails with the last error, or with the first that is not retried."""
    retries = step.retry_exception_types if callable(step.retry_exception_types) \
        else _instance_of(step.retry_exception_types)
    wait = wait_exponential_jitter(**(step.exponential_jitter_params or {})) if step.wait_exponential_jitter else None

    def attempts() -> Value:
        given = tracer.materialize(value)
        outputs: list[Value] = []
        tried = given
        for number in range(1, step.max_attempt_number + 1):
            if outputs:
                tried = _after_failure(tracer, given, outputs[-1], retries, _waited(wait, number - 1), "retry needed")
            attempt_tag = f"retry:attempt:{number}" if number > 1 else None
            bound_tag = BoundTag(attempt_tag, step.config) if step.config else attempt_tag
            outputs.append(tracer.materialize(tracer.trace(step.bound, tried, bound_tag)))
        return _first_success(tracer, outputs, retries, first_error=False, label="RunnableRetry output")

    if own_run:
        return tracer.run_region(lambda name, parent: _region(step, value, tag, name, parent, attempts))
    return attempts()


def _region(step: Any, value: Traced, tag: ChildTag, name: str, parent: str | None,
            inner: Callable[[], Value]) -> tuple[Region, Value]:
    """The step's run as a region named ``name``, ending with the value ``inner`` traces."""
    output = inner()
    inputs, assemble = region_values(value)
    return Region(name, inputs, {"value": output.source}, StepRun(step, tag, name, assemble), parent), output


def _add_run(tracer: "Tracer", step: Any, value: Traced, tag: ChildTag, output: Value) -> None:
    """The step's own run, beside the runs of what it tries."""
    run = tracer.region_name()
    tracer.add_region(_region(step, value, tag, run, tracer.region, lambda: output)[0])


def _instance_of(types: tuple[type[BaseException], ...]) -> Handles:
    def handles(error: BaseException) -> bool:
        return isinstance(error, types)

    return handles


def _waited(wait: Callable[[RetryCallState], float] | None, failed_attempt: int) -> Callable[[], float] | None:
    """The wait tenacity makes after attempt ``failed_attempt`` fails (None: no wait)."""
    if wait is None:
        return None

    def seconds() -> float:
        state = RetryCallState(None, None, (), {})
        state.attempt_number = failed_attempt
        return wait(state)

    return seconds


def _after_failure(tracer: "Tracer", given: Value, output: Value, handles: Handles,
                   wait: Callable[[], float] | None, label: str) -> Value:
    """``given`` (after ``wait``) where ``output`` failed with an error the step ``handles``, else SKIPPED."""
    name = tracer.name("failed")

    async def next_input(given: Any, output: Any) -> Any:
        if not (isinstance(output, Failed) and handles(output.error)):
            return SKIPPED
        if wait is not None:
            await asyncio.sleep(wait())
        return given

    tracer.graph.add(Node(name, ModuleKind.CALL, {"given": given.source, "output": output.source}, ("output",),
                          FnArgs(next_input, label, pure=True, catches=("output",))))
    return Value(Ref(name, "output"))


def _first_success(tracer: "Tracer", outputs: list[Value], handles: Handles, first_error: bool, label: str) -> Value:
    """The tries' outputs in order -> the first success; an error not handled is raised where it
    came; where every try failed, the first error (``first_error``) or the last; SKIPPED where the
    whole step was skipped."""
    keys = tuple(f"tried{i}" for i in range(len(outputs)))

    def first_success(**tried: Any) -> Any:
        errors = []
        for output in tried.values():
            if output is SKIPPED:
                continue
            if not isinstance(output, Failed):
                return output
            if not handles(output.error):
                raise output.error
            errors.append(output.error)
        if errors:
            raise errors[0] if first_error else errors[-1]
        return SKIPPED

    name = tracer.name("tried")
    tracer.graph.add(Node(name, ModuleKind.CALL, {key: out.source for key, out in zip(keys, outputs)}, ("output",),
                          FnArgs(first_success, label, pure=True, runs_on_skipped=keys, catches=keys)))
    return Value(Ref(name, "output"))
