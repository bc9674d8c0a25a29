"""``with_fallbacks``: the runnable, then each fallback only where every one before it failed with
an error the step handles, each traced as any step is (an LLM call or a retrieval in one runs on
the engines); the output is the first that succeeds, and the first error where none does.

A failure is a value here: the node after each runnable catches it (``FnArgs.catches``), so the
query goes on to the next fallback, and the failed runnable's runs report its error, as natively.
``RunnableWithFallbacks`` hands its runnables the config it was itself given, so their runs are
siblings of its own, with its tag (langchain-core 1.8): they are traced beside it, not under it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableWithFallbacks

from teola.adapters.langchain.runs import StepRun, region_values
from teola.adapters.langchain.steps import ChildTag, Traced, Value
from teola.optimizer.ir import ModuleKind, Node, Ref, Region
from teola.optimizer.ops import FnArgs
from teola.optimizer.values import SKIPPED, Failed

if TYPE_CHECKING:
    from teola.adapters.langchain.tracer import Tracer


def fallbacks_why_not(step: RunnableWithFallbacks) -> str | None:
    """Why ``step`` runs as-is, or None."""
    if step.exception_key is not None:
        return "it hands each fallback the error before it (exception_key)"
    return None


def trace_fallbacks(tracer: "Tracer", step: RunnableWithFallbacks, value: Traced, tag: ChildTag,
                    own_run: bool = True) -> Value:
    """``step`` applied to ``value``: its runnables in order, each given the step's input where the
    one before it failed with an error of ``exceptions_to_handle``, else SKIPPED; its own run
    (tagged ``tag``; none where the step is the chain, whose run is the invocation's) ends with the
    first output or fails with the first error."""
    given = tracer.materialize(value)
    outputs: list[Value] = []
    tried = given
    for runnable in step.runnables:
        outputs.append(tracer.materialize(tracer.trace(runnable, tried, tag)))
        tried = _after_failure(tracer, given, outputs[-1], step.exceptions_to_handle)
    name = tracer.name("fallbacks")
    keys = tuple(f"tried{i}" for i in range(len(outputs)))
    tracer.graph.add(Node(name, ModuleKind.CALL, {key: out.source for key, out in zip(keys, outputs)}, ("output",),
                          FnArgs(_first_success(step.exceptions_to_handle), "RunnableWithFallbacks output", pure=True,
                                 runs_on_skipped=True, catches=keys)))
    if own_run:
        run = tracer.region_name()
        inputs, assemble = region_values(value)
        tracer.add_region(Region(run, inputs, {"value": Ref(name, "output")}, StepRun(step, tag, run, assemble),
                                 tracer.region))
    return Value(Ref(name, "output"))


def _after_failure(tracer: "Tracer", given: Value, output: Value, handled: tuple[type[BaseException], ...]) -> Value:
    """``given`` where ``output`` failed with a ``handled`` error (the next runnable is tried), else SKIPPED."""
    name = tracer.name("failed")

    def next_input(given: Any, output: Any) -> Any:
        return given if isinstance(output, Failed) and isinstance(output.error, handled) else SKIPPED

    tracer.graph.add(Node(name, ModuleKind.CALL, {"given": given.source, "output": output.source}, ("output",),
                          FnArgs(next_input, "fallback needed", pure=True, catches=("output",))))
    return Value(Ref(name, "output"))


def _first_success(handled: tuple[type[BaseException], ...]):
    """The outputs in order -> the first success; an error not handled is raised where it came, and
    the first error where every runnable failed (SKIPPED where the whole step was skipped)."""

    def first_success(**tried: Any) -> Any:
        errors = []
        for output in tried.values():
            if output is SKIPPED:
                continue
            if not isinstance(output, Failed):
                return output
            if not isinstance(output.error, handled):
                raise output.error
            errors.append(output.error)
        if errors:
            raise errors[0]
        return SKIPPED

    return first_success
