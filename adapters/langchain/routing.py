"""Routing by a lambda: a ``RunnableLambda`` whose function returns the runnable to run, the routing
guide's second form (``{"topic": classify, "question": ...} | RunnableLambda(route)``).

Which runnable the function returns is known only once it ran, so every runnable it may return is
traced in advance, behind a gate: those its function names (``RunnableLambda.deps``, LangChain's own
reading of the function's globals and closure). The function runs where the lambda's run is open,
as ``RunnableLambda`` runs it; the runnable it returns then runs lowered (its retrieval and LLM calls
on the engines) as an untagged child of the lambda's run, one recursion level deeper, and every other
one is ``SKIPPED``, neither running nor reporting a run. A runnable the function builds as it runs,
not one it names, runs as-is in its place (one log line per lambda); a value that is not a runnable
is the lambda's output, as natively."""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Callable

from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.runnables.config import acall_func_with_variable_args, call_func_with_variable_args, run_in_executor

from teola.adapters.langchain.branch import first_ran
from teola.adapters.langchain.steps import (FRAME, ROUTED, RunHandle, StepFrame, Traced, Value, child_config,
                                            run_in_config)
from teola.optimizer.ir import ModuleKind, Node, Ref
from teola.optimizer.ops import FnArgs
from teola.optimizer.values import SKIPPED

if TYPE_CHECKING:
    from teola.adapters.langchain.tracer import Tracer

log = logging.getLogger(__name__)

MOST_ROUTES = 8  # a lambda naming more runnables runs as-is


def is_routing(step: Any) -> bool:
    """Whether ``step`` is a lambda whose function names runnables it may return."""
    return type(step) is RunnableLambda and bool(step.deps)


def routing_why_not(step: RunnableLambda) -> str | None:
    """Why a routing lambda runs as-is, or None."""
    if not hasattr(step, "func"):
        return "it has only an async function"
    if inspect.isgeneratorfunction(step.func) or inspect.isasyncgenfunction(getattr(step, "afunc", None)):
        return "its function is a generator"
    named = len(routes(step))
    if named > MOST_ROUTES:
        return f"its function names {named} runnables (Teola traces up to {MOST_ROUTES})"
    return None


def routes(step: RunnableLambda) -> list[Runnable]:
    """The runnables ``step``'s function names, once each, in LangChain's order."""
    unique: list[Runnable] = []
    for runnable in step.deps:
        if not any(runnable is seen for seen in unique):
            unique.append(runnable)
    return unique


def trace_routing(tracer: "Tracer", step: RunnableLambda, value: Traced) -> Value:
    """``step`` applied to ``value`` inside its run (``tracer.region``; None where the lambda is the
    chain): the function's call, then each runnable it names traced behind a gate that opens where
    the function returned it; the value is the output of the one that ran, or the function's own."""
    given = tracer.materialize(value)
    with tracer.routing(step):
        candidates = routes(step)
        route = tracer.name("route")
        tracer.graph.add(Node(route, ModuleKind.CALL, {"value": given.source, "frame": FRAME}, ("chosen", "output"),
                              FnArgs(_route_fn(step, candidates, tracer.region), step.get_name())))
        outputs = {"returned": Ref(route, "output")}
        for i, candidate in enumerate(candidates):
            gate = tracer.name("routed")
            tracer.graph.add(Node(gate, ModuleKind.CALL, {"value": given.source, "chosen": Ref(route, "chosen")},
                                  ("output",), FnArgs(_gate_fn(i), f"route {i} chosen", pure=True)))
            outputs[f"route{i}"] = tracer.materialize(tracer.trace(candidate, Value(Ref(gate, "output")), ROUTED)).source
    name = tracer.name("picked")
    tracer.graph.add(Node(name, ModuleKind.CALL, outputs, ("output",),
                          FnArgs(first_ran, "RunnableLambda output", pure=True, runs_on_skipped=tuple(outputs))))
    tracer.picks.add(Ref(name, "output"))
    return Value(Ref(name, "output"))


def _gate_fn(i: int) -> Callable[[Any, Any], Any]:
    def gate(value: Any, chosen: int | None) -> Any:
        return value if chosen == i else SKIPPED

    return gate


def _route_fn(step: RunnableLambda, candidates: list[Runnable], region: str | None) -> Callable[..., Any]:
    """The lambda's function called as ``RunnableLambda`` calls it, under the run of ``region``:
    ``chosen`` is the index of the candidate it returned (None otherwise), ``output`` the
    function's own value, or that of a runnable it returned that is not a candidate (run as-is)."""
    told = False

    async def route(value: Any, frame: StepFrame) -> dict[str, Any]:
        nonlocal told
        lambda_run = await frame.parent_run(region)
        returned = await _called(step, value, frame, lambda_run)
        if not isinstance(returned, Runnable):
            return {"chosen": None, "output": returned}
        config = _deeper(step, value, lambda_run)
        for i, candidate in enumerate(candidates):
            if returned is candidate:
                return {"chosen": i, "output": SKIPPED}
        if not told:
            told = True
            log.info("teola: %s returned a runnable its function does not name (%s); it runs as-is",
                     step.get_name(), returned.get_name())
        output = await run_in_config(frame, config, lambda: returned.invoke(value, config),
                                     lambda: returned.ainvoke(value, config))
        return {"chosen": None, "output": output}

    return route


def _deeper(step: RunnableLambda, value: Any, lambda_run: RunHandle) -> dict[str, Any]:
    """The config the returned runnable runs with; RecursionError where the limit is reached, as natively."""
    config = child_config(lambda_run, ROUTED)
    if config["recursion_limit"] < 0:
        raise RecursionError(f"Recursion limit reached when invoking {step} with input {value}.")
    return config


async def _called(step: RunnableLambda, value: Any, frame: StepFrame, lambda_run: RunHandle) -> Any:
    """The function's return value: called with the lambda's config and run manager, in a child
    config's context (in an async invocation its async function where it has one, else the sync
    one in an executor, as ``RunnableLambda.ainvoke`` calls them)."""
    config, run = lambda_run.config, lambda_run.run

    async def called_async() -> Any:
        if hasattr(step, "afunc"):
            return await acall_func_with_variable_args(step.afunc, value, config, run)
        return await run_in_executor(config, call_func_with_variable_args, step.func, value, config, run.get_sync())

    return await run_in_config(frame, child_config(lambda_run, None),
                               lambda: call_func_with_variable_args(step.func, value, config, run), called_async)
