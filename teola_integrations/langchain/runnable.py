"""``optimize()`` for LangChain: a Runnable that runs the user's chain as one optimized plan."""

from __future__ import annotations

import logging
from typing import Any, Iterable

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.graph import Graph as RunnableGraph
from pydantic import BaseModel

from teola.adapters.langchain import read_runnable
from teola.optimizer.ir import Graph
from teola.optimizer.lowering import lower
from teola.optimizer.passes import PASSES, optimize_plan
from teola.runtime.graph_scheduler import QueryTrace
from teola.runtime.runtime import Runtime, get_runtime
from teola_integrations.langchain.execution import ChainPlan

log = logging.getLogger(__name__)


def build_plan(runnable: Runnable, runtime: Runtime, passes: Iterable[str] = PASSES) -> tuple[Graph, Graph, Graph, list[str]]:
    """Trace, lower and optimize ``runnable``: (module graph, primitive graph, plan, what was lowered)."""
    reading = read_runnable(runnable)
    primitives = lower(reading.graph)
    passes = tuple(passes)
    profile = runtime.cost_profile({n.engine for n in primitives}) if "decompose" in passes else {}
    return reading.graph, primitives, optimize_plan(primitives, passes, profile), reading.lowered


class TeolaRunnable(Runnable):
    """A LangChain Runnable whose invocations run as a primitive graph on Teola's shared engines.

    It behaves as the wrapped chain does: ``invoke``/``ainvoke``/``batch``/``abatch``/``stream``/
    ``astream``/``astream_events``, with callbacks, tags, metadata, run names and
    ``max_concurrency`` honoured. One chain run covers the invocation; steps Teola runs as-is are
    its children with their own runs, while lowered steps (prompt, model, parser, retriever) run as
    primitives and report no runs of their own. ``module_graph``, ``primitive_graph`` and ``plan``
    show what Teola made of the chain; ``lowered`` lists the lowered steps.
    """

    def __init__(self, native: Runnable, runtime: Runtime | None = None, passes: Iterable[str] = PASSES) -> None:
        self.native = native
        self.name = native.get_name()
        runtime = runtime or get_runtime()
        self.module_graph, self.primitive_graph, self.plan, self.lowered = build_plan(native, runtime, passes)
        if not self.lowered:
            log.warning("teola: nothing in %s runs on Teola's engines (use TeolaChatModel, TeolaLLM and a "
                        "TeolaVectorStore retriever); its steps run as-is", self.name)
        self._chain = ChainPlan(self.plan, runtime)

    @property
    def last_trace(self) -> QueryTrace | None:
        """Primitive timings of the most recent invocation (of any caller, when they overlap)."""
        return self._chain.last_trace

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._chain.invoke(self.name, input, config, kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._chain.ainvoke(self.name, input, config, kwargs)

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self.native.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self.native.get_output_schema(config)

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.native.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.native.OutputType

    @property
    def config_specs(self) -> list:
        return self.native.config_specs

    def get_graph(self, config: RunnableConfig | None = None) -> RunnableGraph:
        """The wrapped chain's own graph (Teola's graphs are ``module_graph`` and ``plan``)."""
        return self.native.get_graph(config)


def optimize(runnable: Any, runtime: Runtime | None = None, passes: Iterable[str] = PASSES) -> TeolaRunnable:
    """Wrap a LangChain runnable so its invocations run on Teola's runtime.

    ``passes`` picks the optimizations (all by default; ``()`` runs the traced graph unoptimized).
    Raises ``UnsupportedRunnableError`` for objects that are not runnables.
    """
    return TeolaRunnable(runnable, runtime, passes)
