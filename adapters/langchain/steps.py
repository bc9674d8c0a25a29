"""What the LangChain tracer passes around and how it runs a step as-is: traced values, the
invocation's frame, steps run exactly as LangChain's composites run their children, and the
recogniser protocol of the families Teola lowers."""

from __future__ import annotations

import abc
import asyncio
import contextvars
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from langchain_core.runnables import (Runnable, RunnableBinding, RunnableConfig, RunnableParallel, RunnableSequence,
                                      patch_config)
from langchain_core.runnables.config import DEFAULT_RECURSION_LIMIT

from teola.adapters.langchain.compat import coro_with_context, merge_configs, set_config_context
from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref, Source
from teola.optimizer.ops import FnArgs

if TYPE_CHECKING:
    from teola.adapters.langchain.tracer import Tracer


@dataclass(frozen=True)
class RunHandle:
    """An open run: the config its step was called with, its run manager, the step's input, and
    the runs it opened per item (a ``.map()``)."""

    config: RunnableConfig
    run: Any
    input: Any = None
    items: tuple[Any, ...] = ()


@dataclass(frozen=True)
class BoundTag:
    """The child tag of a step bound by ``.with_config(...)``: its run gets ``config`` merged into
    the child config, as ``RunnableBinding`` merges it (``tag`` may be bound again)."""

    tag: "ChildTag"
    config: RunnableConfig


@dataclass(frozen=True)
class GivenConfig:
    """In place of a child tag: the step runs with the config its parent was given, inside the
    context of a child config of its run (``RunnableWithFallbacks`` runs its runnables so): the
    given config's callbacks where it has any, else the child's."""


@dataclass(frozen=True)
class Routed:
    """In place of a child tag: the runnable a routing lambda returned, run as ``RunnableLambda``
    runs it: an untagged child of the lambda's run, one level deeper (``recursion_limit`` less one)."""


GIVEN_CONFIG = GivenConfig()
ROUTED = Routed()
ChildTag = str | BoundTag | GivenConfig | Routed | None
# What ``.with_config`` may set for a binding to be traced through (the rest changes how its step runs).
TRACED_CONFIG_KEYS = frozenset({"run_name", "tags", "metadata"})


def binds_only_traced_config(binding: Any) -> bool:
    """Whether a binding (``RunnableBinding`` or a subclass such as ``RunnableRetry``) binds nothing
    but a run name, tags and metadata: no call arguments, callbacks or config factories."""
    return not binding.kwargs and not binding.config_factories and set(binding.config) <= TRACED_CONFIG_KEYS


def config_binding(step: Any) -> RunnableConfig | None:
    """The config a ``.with_config(run_name=..., tags=..., metadata=...)`` binding gives its step, or
    None for any other step (kwargs bound with ``.bind``, callbacks, factories: it runs as-is)."""
    return step.config if type(step) is RunnableBinding and binds_only_traced_config(step) else None


def unbind(runnable: Runnable) -> tuple[Runnable, tuple[RunnableConfig, ...]]:
    """A chain under ``.with_config`` bindings (``create_retrieval_chain``'s, say) and their configs,
    outermost first: the chain's own run is the invocation's, so they go to its config."""
    configs: list[RunnableConfig] = []
    while (config := config_binding(runnable)) is not None:
        configs.append(config)
        runnable = runnable.bound
    return runnable, tuple(configs)


def bound_config(configs: tuple[RunnableConfig, ...], config: RunnableConfig | None) -> RunnableConfig | None:
    """An invocation's ``config`` as the bindings ``configs`` (outermost first) hand it to their chain."""
    for bound in configs:
        config = merge_configs(bound, config)
    return config


def child_config(parent: RunHandle, tag: ChildTag) -> RunnableConfig:
    """The config a composite whose run is ``parent`` hands its child tagged ``tag``: a child
    callback manager of its run (and a bound child's own config merged in, as its binding does)."""
    if isinstance(tag, BoundTag):
        return merge_configs(tag.config, child_config(parent, tag.tag))
    if isinstance(tag, GivenConfig):  # what ensure_config makes of it inside a child config's context
        given = {key: value for key, value in parent.config.items() if value is not None}
        return {**patch_config(parent.config, callbacks=parent.run.get_child()), **given}
    if isinstance(tag, Routed):
        limit = parent.config.get("recursion_limit", DEFAULT_RECURSION_LIMIT)
        return patch_config(parent.config, callbacks=parent.run.get_child(), recursion_limit=limit - 1)
    return patch_config(parent.config, callbacks=parent.run.get_child(tag))


def run_name(config: RunnableConfig, step: Runnable) -> str:
    """The name a step's run gets: the config's ``run_name`` (a binding's), else the step's own."""
    return config.get("run_name") or step.get_name()


@dataclass
class StepFrame:
    """One invocation's LangChain context, handed to every step Teola runs as-is.

    ``run_manager`` is the invocation's chain run (sync or async); a step gets a child config of it
    tagged as LangChain tags it. Sync steps run in ``executor`` (LangChain's executor for the
    config, so ``max_concurrency`` holds) inside a copy of the caller's ``context``. When callbacks
    listen (``traced``), the runs of the traced steps (``teola.adapters.langchain.runs``) open as
    the plan runs, and a step run as-is goes under its enclosing step's run (``parent_run``).
    ``streamed``: the invocation is a stream, whose steps LangChain runs as streams (a model's run
    then ends with a streamed generation).
    """

    config: RunnableConfig
    run_manager: Any
    is_async: bool
    context: contextvars.Context
    executor: Executor | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    streamed: bool = False
    _runs: dict[str, asyncio.Future] = field(default_factory=dict, repr=False)

    @property
    def traced(self) -> bool:
        """Whether any callback handler listens to this invocation."""
        return bool(self.run_manager.handlers)

    @property
    def root(self) -> RunHandle:
        """The invocation's own run."""
        return RunHandle(self.config, self.run_manager)

    def _run_future(self, region: str) -> asyncio.Future:
        if region not in self._runs:
            self._runs[region] = asyncio.get_running_loop().create_future()
        return self._runs[region]

    def started(self, region: str, handle: RunHandle) -> None:
        """The run of ``region`` is open (called by its observer, on the runtime's loop)."""
        self._run_future(region).set_result(handle)

    async def parent_run(self, region: str | None) -> RunHandle:
        """The run a step inside ``region`` (None: the chain itself) goes under."""
        if region is None or not self.traced:
            return self.root
        return await asyncio.shield(self._run_future(region))


def step_call(step: Runnable, tag: ChildTag, first: bool = False, region: str | None = None) -> Callable[..., Any]:
    """A coroutine function running ``step`` exactly as a LangChain composite runs its child:
    with a child config tagged ``tag`` of the run of ``region`` (None: the chain's own run), in its
    config context; ``first`` steps get the call's kwargs."""

    async def call(input: Any, frame: StepFrame) -> Any:
        parent = await frame.parent_run(region)
        config = child_config(parent, tag)
        kwargs = frame.kwargs if first else {}
        return await run_in_config(frame, config, lambda: step.invoke(input, config, **kwargs),
                                   lambda: step.ainvoke(input, config, **kwargs))

    return call


async def run_in_config(frame: StepFrame, config: RunnableConfig, sync: Callable[[], Any],
                        coroutine: Callable[[], Awaitable[Any]]) -> Any:
    """What a step's ``invoke`` (``sync()``) or, in an async invocation, its ``ainvoke``
    (``coroutine()``) returns, run in ``config``'s context as LangChain runs a child: the sync one
    in the invocation's executor, inside a copy of the caller's context."""
    if frame.is_async:
        with set_config_context(config) as context:
            return await coro_with_context(coroutine(), context, create_task=True)

    def invoke() -> Any:
        with set_config_context(config) as context:
            return context.run(sync)

    return await asyncio.get_running_loop().run_in_executor(frame.executor, frame.context.copy().run, invoke)


@dataclass(frozen=True)
class Value:
    """A traced value: where it comes from, and whether it is known from the query's input alone."""

    source: Source
    early: bool = False


@dataclass(frozen=True)
class DictValue:
    """A traced dict kept key by key: a ``RunnableParallel``'s output, or what ``.assign`` adds to
    ``base`` (a dict value whose keys are known only at run time)."""

    items: dict[str, "Value"]
    base: Value | None = None


Traced = Value | DictValue
INPUT = QueryInput("input")
FRAME = QueryInput("frame")


def level_graph(runnable: RunnableSequence | RunnableParallel) -> Graph:
    """One composite as LangChain runs it, each child a ``call`` with the child tag LangChain gives
    it (``seq:step:N``, ``map:key:K``): what the executor switch runs for a chain Teola cannot lower."""
    graph = Graph(inputs=("input", "frame"))
    if isinstance(runnable, RunnableSequence):
        source: Source = INPUT
        for i, step in enumerate(runnable.steps):
            name = f"step{i + 1}"
            graph.add(Node(name, ModuleKind.CALL, {"input": source, "frame": FRAME}, ("output",),
                           FnArgs(step_call(step, f"seq:step:{i + 1}", first=i == 0), step.get_name())))
            source = Ref(name, "output")
        graph.set_output("output", source)
        return graph
    keys = list(runnable.steps__)
    for i, (key, step) in enumerate(runnable.steps__.items()):
        graph.add(Node(f"key{i}", ModuleKind.CALL, {"input": INPUT, "frame": FRAME}, ("output",),
                       FnArgs(step_call(step, f"map:key:{key}"), step.get_name())))
    graph.add(Node("merge", ModuleKind.CALL, {f"key{i}": Ref(f"key{i}", "output") for i in range(len(keys))}, ("output",),
                   FnArgs(keyed_dict(keys), "RunnableParallel output", pure=True)))
    graph.set_output("output", Ref("merge", "output"))
    return graph


def dict_parts(value: "DictValue") -> tuple[dict[str, Source], Callable[..., dict]]:
    """A dict kept key by key as sources (``key0``, ``key1`` ... and its ``base``) and the function of
    them that rebuilds it: keys in LangChain's order, over the base (``.assign`` keeps the input's
    keys first: ``{**input, **added}``)."""
    keys = list(value.items)
    sources: dict[str, Source] = {f"key{i}": value.items[key].source for i, key in enumerate(keys)}
    merge = keyed_dict(keys)
    if value.base is None:
        return sources, merge
    sources["base"] = value.base.source
    return sources, lambda base, **items: {**base, **merge(**items)}


def keyed_dict(keys: list[str]) -> Callable[..., dict]:
    def merge(**values: Any) -> dict:
        return {key: values[f"key{i}"] for i, key in enumerate(keys)}

    return merge


class StepRecogniser(abc.ABC):
    """One family of LangChain steps Teola lowers: ``accepts`` whether a step is of it, ``why_not``
    why an accepted one cannot be lowered (None: it can), ``read`` its modules, given the traced
    value it is applied to."""

    family: str

    @abc.abstractmethod
    def accepts(self, step: Any) -> bool:
        """Whether ``step`` is of this family."""

    @abc.abstractmethod
    def why_not(self, step: Any) -> str | None:
        """Why ``step`` (accepted) cannot be lowered, or None."""

    def takes(self, value: "Traced") -> bool:
        """Whether a step of this family can be lowered on ``value`` (what flows into it)."""
        return True

    @abc.abstractmethod
    def read(self, tracer: "Tracer", step: Any, value: "Traced", tag: ChildTag) -> "Value":
        """``step`` applied to ``value``, as modules of ``tracer``'s graph, and its run as a region
        (``tag``: the child tag LangChain gives the step)."""
