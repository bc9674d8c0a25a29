"""``RunnableBranch``: the conditions in LangChain's order, then the one branch they pick, each
traced as any step is (an LLM call or a retrieval in a branch runs on the engines).

A condition is reached only while every condition before it failed, and a branch runs only when
its condition is the first that held (the default when none did): everything else is ``SKIPPED``,
so a condition not reached and a branch not picked neither run nor report a run, as natively."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableBranch

from teola.adapters.langchain.steps import Traced, Value
from teola.optimizer.ir import ModuleKind, Node, Ref
from teola.optimizer.ops import FnArgs
from teola.optimizer.values import SKIPPED

if TYPE_CHECKING:
    from teola.adapters.langchain.tracer import Tracer


def trace_branch(tracer: "Tracer", step: RunnableBranch, value: Traced) -> Value:
    """``step`` applied to ``value``: its conditions and branches under the enclosing region,
    tagged ``condition:N`` and ``branch:N`` (``branch:default``) as ``RunnableBranch`` tags them;
    the value is the picked branch's output."""
    left = tracer.materialize(value)  # what the next condition is asked about: SKIPPED once one held
    outputs = []
    for i, (condition, branch) in enumerate(step.branches, start=1):
        held = tracer.materialize(tracer.trace(condition, left, f"condition:{i}"))
        picked = _gate(tracer, left, held, when=True)
        left = _gate(tracer, left, held, when=False)
        outputs.append(tracer.materialize(tracer.trace(branch, picked, f"branch:{i}")))
    outputs.append(tracer.materialize(tracer.trace(step.default, left, "branch:default")))
    name = tracer.name("picked")
    branches = {f"branch{i}": out.source for i, out in enumerate(outputs)}
    tracer.graph.add(Node(name, ModuleKind.CALL, branches, ("output",),
                          FnArgs(first_ran, "RunnableBranch output", pure=True, runs_on_skipped=tuple(branches))))
    tracer.picks.add(Ref(name, "output"))
    return Value(Ref(name, "output"))


def _gate(tracer: "Tracer", value: Value, held: Value, when: bool) -> Value:
    """``value`` where the condition's truth is ``when``, else ``SKIPPED``."""
    name = tracer.name("held" if when else "failed")

    def gate(value: Any, held: Any) -> Any:
        return value if bool(held) is when else SKIPPED

    tracer.graph.add(Node(name, ModuleKind.CALL, {"value": value.source, "held": held.source}, ("output",),
                          FnArgs(gate, f"condition {'held' if when else 'failed'}", pure=True)))
    return Value(Ref(name, "output"))


def first_ran(**outputs: Any) -> Any:
    """The output of the branch (or route) that ran (SKIPPED where the whole branch step was skipped)."""
    return next((out for out in outputs.values() if out is not SKIPPED), SKIPPED)
