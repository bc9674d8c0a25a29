"""Tracing an LCEL runnable into a module graph, following the runnables' own structure."""

from __future__ import annotations

import itertools
import operator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from langchain_core.runnables import (Runnable, RunnableAssign, RunnableBranch, RunnableConfig, RunnableLambda,
                                      RunnableParallel, RunnablePassthrough, RunnableSequence, RunnableWithFallbacks)

from teola.adapters.bindings import record_spec
from teola.adapters.langchain import compat
from teola.adapters.langchain.attempts import fallbacks_why_not, retry_why_not, trace_fallbacks, trace_retry
from teola.adapters.langchain.branch import trace_branch
from teola.adapters.langchain.each_call import EACH_CALL
from teola.adapters.langchain.compat import RunnableRetry
from teola.adapters.langchain.llm_calls import ENGINE_MODEL, FinalGeneration, single_key, llm_call_at, read_llm_call
from teola.adapters.langchain.retrievers import ENSEMBLE, RETRIEVER
from teola.adapters.langchain.routing import is_routing, routing_why_not, trace_routing
from teola.adapters.langchain.runs import StepRun, region_values
from teola.adapters.langchain.steps import (FRAME, GIVEN_CONFIG, INPUT, BoundTag, ChildTag, DictValue, StepRecogniser,
                                            Traced, Value, config_binding, dict_parts, step_call, unbind)
from teola.optimizer.ir import Graph, ModuleKind, Node, Ref, Region, Source
from teola.optimizer.ops import FnArgs
from teola.runtime.registry import EngineSpec

# The families single steps are lowered by (a prompt | model | parser run is matched over a sequence).
STEP_RECOGNISERS: tuple[StepRecogniser, ...] = (RETRIEVER, ENSEMBLE, ENGINE_MODEL, EACH_CALL)


class UnsupportedRunnableError(TypeError):
    """``optimize()`` was given something that is not a LangChain runnable."""


@dataclass(frozen=True)
class RoutedAnswer:
    """The chain's output is that of whichever route ran, of those the node ``picked`` picks from
    (a branch's or a routing lambda's): ``finals`` are the routes (by ``picked``'s input) whose
    value is an LLM call's, which can stream."""

    picked: str
    finals: dict[str, FinalGeneration]


@dataclass
class ChainReading:
    """What the adapter read: the module graph, what was lowered, the LLM call that gives the
    chain's output (if one does, as a step of the chain itself) or the routes that do, the engines
    its steps run on that the chain must start (its own clients'), and the configs of the
    ``.with_config`` bindings around the chain, which every invocation's config takes
    (``steps.bound_config``). ``streams_natively``: why a stream of the chain must run as LangChain
    runs it (None: Teola can stream it)."""

    graph: Graph
    lowered: list[str] = field(default_factory=list)
    final: FinalGeneration | None = None
    engines: list[EngineSpec] = field(default_factory=list)
    root_configs: tuple[RunnableConfig, ...] = ()
    routed: RoutedAnswer | None = None
    streams_natively: str | None = None


def read_runnable(runnable: Any) -> ChainReading:
    """Trace ``runnable`` (any LCEL composition) into a module graph with inputs ``input`` (the
    chain's input) and ``frame`` (a ``StepFrame``) and one output, ``output``."""
    compat.check_version()
    if not isinstance(runnable, Runnable):
        raise UnsupportedRunnableError(
            f"optimize() takes a LangChain runnable (an LCEL chain such as prompt | model | parser), "
            f"got {type(runnable).__module__}.{type(runnable).__name__}")
    tracer = Tracer()
    chain, root_configs = unbind(runnable)
    out = tracer.materialize(tracer.trace_root(chain, Value(INPUT, early=True)))
    tracer.graph.set_output("output", out.source)
    tracer.declare_regions()
    final = tracer.generations.get(out.source)
    return ChainReading(tracer.graph, tracer.lowered, final if final is not None and final.region is None else None,
                        tracer.engines, root_configs, tracer.routed_answer(out.source), _streams_natively(tracer.tries))


def _streams_natively(tries: set[str]) -> str | None:
    """Why a chain with the steps ``tries`` (with_fallbacks, with_retry) streams as LangChain streams it."""
    if not tries:
        return None
    return (f"it has {' and '.join(sorted(tries))} steps, which LangChain's stream runs its own way "
            f"(a retry's stream is not retried, a fallback is chosen by the first chunk)")


class Tracer:
    """Traces one runnable into a module graph: the structure (sequences, parallels, passthrough,
    assign, itemgetter and ``.with_config`` here; branches, routing lambdas, fallbacks and retries in
    their own modules), the families Teola lowers by their recognisers, the rest as calls. Every step but the chain itself is also a region, the run LangChain would report for it
    (``teola.adapters.langchain.runs``), under the region of the step that encloses it."""

    def __init__(self) -> None:
        self.graph = Graph(inputs=("input", "frame"))
        self.lowered: list[str] = []
        self.generations: dict[Source, FinalGeneration] = {}  # every LLM call's output
        self.picks: set[Ref] = set()  # the outputs of the nodes that pick one of a step's routes
        self.tries: set[str] = set()  # the kinds of with_fallbacks/with_retry steps met
        self.engines: list[EngineSpec] = []
        self.region: str | None = None  # the enclosing step's region while its children are traced
        self._regions: list[Region | None] = []  # parents before children: a slot is taken before it is known
        self._routing: list[Runnable] = []  # the routing lambdas whose routes are being traced
        self._ids = itertools.count(1)
        self._region_ids = itertools.count(1)

    def run_region(self, make: Callable[[str, str | None], tuple[Region, Traced]]) -> Traced:
        """A step traced as a region: ``make(name, parent)`` traces it with ``self.region`` set to
        ``name`` and returns its region and its value."""
        name, parent, slot = self.region_name(), self.region, len(self._regions)
        self._regions.append(None)
        self.region = name
        try:
            region, value = make(name, parent)
        finally:
            self.region = parent
        self._regions[slot] = region
        return value

    def add_region(self, region: Region) -> None:
        """A region of a step whose children are not traced (a retriever, a prompt, a model, a parser)."""
        self._regions.append(region)

    def declare_regions(self) -> None:
        """Declare the traced regions in the graph, parents first."""
        for region in self._regions:
            self.graph.add_region(region)

    @contextmanager
    def routing(self, step: Runnable) -> Iterator[None]:
        """While the routes of the routing lambda ``step`` are traced."""
        self._routing.append(step)
        try:
            yield
        finally:
            self._routing.pop()

    def routes_through(self, runnable: Runnable) -> bool:
        """Whether ``runnable`` is a routing lambda whose routes are being traced: a route back to it
        runs it as-is, where LangChain's recursion limit holds."""
        return any(runnable is step for step in self._routing)

    def routed_answer(self, source: Source) -> RoutedAnswer | None:
        """The routes of the step whose output is ``source``, where some route's value is an LLM call's."""
        if source not in self.picks:
            return None
        finals = {route: self.generations[value] for route, value in self.graph[source.node].inputs.items()
                  if value in self.generations}
        return RoutedAnswer(source.node, finals) if finals else None

    def trace_root(self, runnable: Runnable, value: Traced) -> Traced:
        """The chain itself: its run is the invocation's own, so only its steps are regions."""
        self._note_tries(runnable)
        if isinstance(runnable, RunnableSequence):
            return self._sequence(runnable.steps, value)
        if isinstance(runnable, RunnableParallel):
            return self._parallel(runnable, value)
        if isinstance(runnable, RunnableAssign):
            return self._assign(runnable, value)
        if isinstance(runnable, RunnableBranch):
            return trace_branch(self, runnable, value)
        if isinstance(runnable, RunnableWithFallbacks) and fallbacks_why_not(runnable) is None:
            return trace_fallbacks(self, runnable, value, GIVEN_CONFIG, own_run=False)
        if isinstance(runnable, RunnableRetry) and retry_why_not(runnable) is None:
            return trace_retry(self, runnable, value, None, own_run=False)
        if is_routing(runnable) and routing_why_not(runnable) is None:
            return trace_routing(self, runnable, value)
        return self.trace(runnable, value, None)

    def _note_tries(self, step: Runnable) -> None:
        if isinstance(step, (RunnableWithFallbacks, RunnableRetry)):
            self.tries.add("with_fallbacks" if isinstance(step, RunnableWithFallbacks) else "with_retry")

    def name(self, base: str) -> str:
        """A fresh node name."""
        return f"{base}{next(self._ids)}"

    def region_name(self) -> str:
        """A fresh region name (numbered apart from nodes, whose names the plan shows)."""
        return f"run{next(self._region_ids)}"

    def needs(self, spec: EngineSpec | None) -> None:
        """Record that the chain's steps run on the engine ``spec`` (None: one that runs already)."""
        record_spec(self.engines, spec)

    def trace(self, step: Runnable, value: Traced, tag: ChildTag) -> Traced:
        """``step`` applied to ``value``; ``tag`` is the child tag LangChain gives the step."""
        self._note_tries(step)
        if isinstance(step, RunnableSequence):
            return self.step_region(step, tag, value, lambda: self._sequence(step.steps, value))
        if isinstance(step, RunnableParallel):
            return self.step_region(step, tag, value, lambda: self._parallel(step, value))
        if type(step) is RunnablePassthrough and step.func is None and step.afunc is None:
            return self.step_region(step, tag, value, lambda: value)
        if isinstance(step, RunnableAssign):
            return self.step_region(step, tag, value, lambda: self._assign(step, value))
        if isinstance(step, RunnableBranch):
            return self.step_region(step, tag, value, lambda: trace_branch(self, step, value))
        if (bound := config_binding(step)) is not None:  # .with_config(run_name=...): its step's run takes it
            return self.trace(step.bound, value, BoundTag(tag, bound))
        if isinstance(step, RunnableWithFallbacks) and fallbacks_why_not(step) is None:
            return trace_fallbacks(self, step, value, tag)
        if isinstance(step, RunnableRetry) and retry_why_not(step) is None:
            return trace_retry(self, step, value, tag)
        if type(step) is RunnableLambda and isinstance(step.func, operator.itemgetter) and single_key(step.func):
            return self.step_region(step, tag, value, lambda: self.key(value, single_key(step.func)[0]))
        if is_routing(step) and not self.routes_through(step) and routing_why_not(step) is None:
            return self.step_region(step, tag, value, lambda: trace_routing(self, step, value))
        for recogniser in STEP_RECOGNISERS:
            if recogniser.accepts(step) and recogniser.takes(value) and not recogniser.why_not(step):
                return recogniser.read(self, step, value, tag)
        return self._call(step, value, tag)

    def step_region(self, step: Runnable, tag: ChildTag, value: Traced, trace: Callable[[], Traced]) -> Traced:
        """``step`` on ``value`` as its own chain run, its children traced by ``trace`` inside it."""

        def make(name: str, parent: str | None) -> tuple[Region, Traced]:
            out = trace()
            inputs, assemble_in = region_values(value)
            outputs, assemble_out = region_values(out)
            return Region(name, inputs, outputs, StepRun(step, tag, name, assemble_in, assemble_out), parent), out

        return self.run_region(make)

    def _assign(self, step: RunnableAssign, value: Traced) -> DictValue:
        base = value if isinstance(value, DictValue) else DictValue({}, base=value)
        added = self.trace(step.mapper, base, None)
        return DictValue({**base.items, **added.items}, base.base)

    def _parallel(self, step: RunnableParallel, value: Traced) -> DictValue:
        return DictValue({key: self.materialize(self.trace(branch, value, f"map:key:{key}"))
                          for key, branch in step.steps__.items()})

    def _sequence(self, steps: list[Runnable], value: Traced) -> Traced:
        i = 0
        while i < len(steps):
            call = llm_call_at(steps, i)
            if call is not None:
                value = read_llm_call(self, call, value, [f"seq:step:{i + 1 + k}" for k in range(call.length)])
                i += call.length
            else:
                value = self.trace(steps[i], value, f"seq:step:{i + 1}")
                i += 1
        return value

    def key(self, value: Traced, key: Any) -> Value:
        """``value[key]``: a known item costs nothing; otherwise a lookup node, as early as its dict."""
        if isinstance(value, DictValue) and key in value.items:
            return value.items[key]
        source = value.base if isinstance(value, DictValue) and value.base is not None else self.materialize(value)
        name = self.name("get")
        self.graph.add(Node(name, ModuleKind.CALL, {"input": source.source}, ("output",),
                            FnArgs(lambda input: input[key], f"[{key!r}]", pure=True)))
        return Value(Ref(name, "output"), early=source.early)

    def materialize(self, value: Traced) -> Value:
        """A dict value as one node's output: a plain dict, keys in LangChain's order (``.assign``
        keeps the input's keys first: ``{**input, **added}``)."""
        if isinstance(value, Value):
            return value
        name = self.name("dict")
        inputs, fn = dict_parts(value)
        self.graph.add(Node(name, ModuleKind.CALL, inputs, ("output",), FnArgs(fn, "dict", pure=True)))
        return Value(Ref(name, "output"), early=all(v.early for v in value.items.values()) and
                     (value.base is None or value.base.early))

    def _call(self, step: Runnable, value: Traced, tag: ChildTag) -> Value:
        """The step run as-is, as LangChain runs it (its run under its enclosing step's)."""
        name = self.name("call")
        self.graph.add(Node(name, ModuleKind.CALL, {"input": self.materialize(value).source, "frame": FRAME}, ("output",),
                            FnArgs(step_call(step, tag, region=self.region), step.get_name())))
        return Value(Ref(name, "output"))

