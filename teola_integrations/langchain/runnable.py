"""``optimize()`` for LangChain: a Runnable that runs the user's chain as one optimized plan."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Iterable, Iterator

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.graph import Graph as RunnableGraph
from langchain_core.utils.utils import LC_ID_PREFIX
from pydantic import BaseModel

from teola.adapters.langchain import FinalGeneration, RoutedAnswer, StepFrame, read_runnable
from teola.adapters.langchain.compat import get_executor_for_config
from teola.adapters.langchain.steps import bound_config, child_config
from teola.optimizer.ir import Graph
from teola.optimizer.passes import PASSES
from teola.optimizer.stream_output import stream_output, stream_routes
from teola.runtime.errors import PrimitiveError, original_error
from teola.runtime.runtime import Runtime, get_runtime
from teola.runtime.streams import TextStream
from teola_integrations.compile import compile_graph
from teola_integrations.langchain.answer_stream import answer_achunks, answer_chunks
from teola_integrations.langchain.execution import ChainPlan, streams_tokens_to_a_handler

log = logging.getLogger(__name__)


@dataclass
class ChainBuild:
    """What Teola made of a runnable: the module graph, the primitive graph, the optimized plan,
    the lowered steps, the LLM call whose text is the chain's answer (if one is) or the routes whose
    LLM calls' are, the configs of the ``.with_config`` bindings around the chain (each
    invocation's config takes them), and why its streams run as LangChain runs them (None: on Teola)."""

    module_graph: Graph
    primitive_graph: Graph
    plan: Graph
    lowered: list[str]
    final: FinalGeneration | None
    root_configs: tuple[RunnableConfig, ...] = ()
    routed: RoutedAnswer | None = None
    streams_natively: str | None = None


def build_plan(runnable: Runnable, runtime: Runtime, passes: Iterable[str] = PASSES, holder: object | None = None) -> ChainBuild:
    """Trace, lower and optimize ``runnable``; the engines of its own clients are started, held by
    ``holder`` (released once it is gone)."""
    reading = read_runnable(runnable)
    for spec in reading.engines:
        runtime.engine(spec, holder if holder is not None else runnable)
    compiled = compile_graph(reading.graph, runtime, passes)
    return ChainBuild(compiled.module_graph, compiled.primitive_graph, compiled.plan, reading.lowered, reading.final,
                      reading.root_configs, reading.routed, reading.streams_natively)


@dataclass
class StreamPlan:
    """The plan a stream runs: its output the answer as it is generated (a ``TextStream``) or, where
    the route that ran is not an LLM call, its value; ``finals`` the LLM calls whose text it may
    stream, by decode."""

    chain: ChainPlan
    finals: dict[str, FinalGeneration]

    def final(self, answer: Any) -> FinalGeneration | None:
        """The LLM call whose text ``answer`` streams (None: the route that ran gives its value)."""
        return self.finals[answer.node] if isinstance(answer, TextStream) else None


def stream_plan(build: ChainBuild, runtime: Runtime) -> StreamPlan | None:
    """The plan that streams ``build``'s answer, where an LLM call's text is the answer (or the
    answer of some routes of a branch or routing lambda); None where the answer comes whole."""
    if build.final is not None:
        plan = stream_output(build.plan, build.final.decode, "output")
        return StreamPlan(ChainPlan(plan, runtime), {build.final.decode: _reported(build.final, plan)})
    if build.routed is None:
        return None
    routed = build.routed
    plan = stream_routes(build.plan, routed.picked, {route: final.decode for route, final in routed.finals.items()},
                         "output")
    finals = [final for final in routed.finals.values() if final.decode in plan and plan[final.decode].meta.stream]
    if not finals:
        return None
    parser_runs = {final.parser_region for final in finals}  # the stream reports them, as the root's
    plan.keep_regions(lambda region: region.name not in parser_runs)
    return StreamPlan(ChainPlan(plan, runtime), {final.decode: _reported(final, plan) for final in finals})


def _reported(final: FinalGeneration, plan: Graph) -> FinalGeneration:
    """``final``, its model's run left out where ``plan`` does not report it."""
    return final if final.model_region in plan.regions else replace(final, model_region=None)


class TeolaRunnable(Runnable):
    """A LangChain Runnable whose invocations run as a primitive graph on Teola's shared engines.

    It behaves as the wrapped chain does: ``invoke``/``ainvoke``/``batch``/``abatch``/``stream``/
    ``astream``/``astream_events``, with callbacks, tags, metadata, run names and
    ``max_concurrency`` honoured. One chain run covers the invocation, and callback handlers see
    under it the run tree LangChain reports (every step's run, nested, named, typed and tagged as
    natively, with the same inputs and outputs): lowered steps' runs are reported as the plan runs
    (``teola.adapters.langchain.runs``), steps run as-is open theirs under their enclosing step's.
    When the answer streams, its model's run reports each piece as it comes and its parser's run is
    the native stream's. Where the chain's answer is an LLM call's (parsed)
    text, streaming yields it token by token as the native chain does, from a plan whose final
    decode streams (the parser then streams as in a native stream, with its own child run); so does
    a chain whose answer is a branch's or routing lambda's, where the route that ran is an LLM call
    (``StreamPlan``); otherwise the answer comes as one chunk. A chain with ``with_fallbacks`` or
    ``with_retry`` steps streams as LangChain streams it (one log line): LangChain's stream does not
    retry, and picks a fallback by its first chunk. An ``invoke``/``ainvoke`` that a token-streaming handler
    watches (LangGraph's ``messages`` stream mode, ``astream_events``, ``astream_log``) runs the
    wrapped chain, whose models stream their tokens to it. ``module_graph``, ``primitive_graph``
    and ``plan`` show what Teola made of the chain; ``lowered`` lists the lowered steps. Each
    invocation's primitive timings go to the caller's ``teola.runtime.traces.record_traces()``.
    """

    def __init__(self, native: Runnable, runtime: Runtime | None = None, passes: Iterable[str] = PASSES) -> None:
        self.native = native
        self.name = native.get_name()
        runtime = runtime or get_runtime()
        build = build_plan(native, runtime, passes, holder=self)
        self.module_graph, self.primitive_graph, self.plan, self.lowered = (build.module_graph, build.primitive_graph,
                                                                            build.plan, build.lowered)
        if not self.lowered:
            log.warning("teola: nothing in %s runs on Teola's engines (it lowers TeolaChatModel, TeolaLLM, "
                        "langchain-openai clients, and retrievers over a TeolaVectorStore or an InMemoryVectorStore); "
                        "its steps run as-is", self.name)
        self._chain = ChainPlan(self.plan, runtime)
        self._root_configs = build.root_configs
        self._streaming = stream_plan(build, runtime)
        self._streams_natively = build.streams_natively
        self._told_streaming = False

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if streams_tokens_to_a_handler(config):  # its models stream to that handler, as LangChain's do
            return self.native.invoke(input, config, **kwargs)
        return self._chain.invoke(self.name, input, bound_config(self._root_configs, config), kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if streams_tokens_to_a_handler(config):
            return await self.native.ainvoke(input, config, **kwargs)
        return await self._chain.ainvoke(self.name, input, bound_config(self._root_configs, config), kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        if self._stream_natively():
            yield from self.native.stream(input, config, **kwargs)
            return
        if self._streaming is None:
            yield from super().stream(input, config, **kwargs)
            return
        yield from self._transform_stream_with_config(iter([input]), self._stream_answer,
                                                      bound_config(self._root_configs, config), **kwargs)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        if self._stream_natively():
            async for chunk in self.native.astream(input, config, **kwargs):
                yield chunk
            return
        if self._streaming is None:
            async for chunk in super().astream(input, config, **kwargs):
                yield chunk
            return

        async def only() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(only(), self._astream_answer,
                                                               bound_config(self._root_configs, config), **kwargs):
            yield chunk

    def _stream_natively(self) -> bool:
        """Whether a stream runs as LangChain runs it (said once, with why)."""
        if self._streams_natively is None:
            return False
        if not self._told_streaming:
            log.warning("teola: %s streams as LangChain streams it (unoptimized): %s; invoke() and batch() run on "
                        "Teola", self.name, self._streams_natively)
            self._told_streaming = True
        return True

    def _stream_answer(self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun,
                       config: RunnableConfig, **kwargs: Any) -> Iterator[Any]:
        [input] = inputs
        streaming = self._streaming.chain
        with get_executor_for_config(config) as executor, _raising_original_errors():
            frame = StepFrame(config, run_manager, False, streaming.step_context(), executor, kwargs, streamed=True)
            answer = streaming.run({"input": input, "frame": frame})["output"]
            final = self._streaming.final(answer)
            if final is None:
                yield answer
                return
            message_id, parser_config = streaming.runtime.run(_answer_runs(frame, final))
            yield from answer_chunks(final, streaming.runtime.iterate(answer.deltas()), parser_config, message_id)

    async def _astream_answer(self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun,
                              config: RunnableConfig, **kwargs: Any) -> AsyncIterator[Any]:
        input = await anext(inputs)
        streaming = self._streaming.chain
        with _raising_original_errors():
            frame = StepFrame(config, run_manager, True, streaming.step_context(), None, kwargs, streamed=True)
            answer = (await streaming.arun({"input": input, "frame": frame}))["output"]
            final = self._streaming.final(answer)
            if final is None:
                yield answer
                return
            message_id, parser_config = await streaming.runtime.arun(_answer_runs(frame, final))
            async for chunk in answer_achunks(final, streaming.runtime.aiterate(answer.deltas()), parser_config,
                                              message_id):
                yield chunk

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


async def _answer_runs(frame: StepFrame, final: FinalGeneration) -> tuple[str | None, RunnableConfig]:
    """Where the streamed answer reports: the id of its message (its model run's, where the run is
    reported) and the config its parser streams with (a child of the run of the step the LLM call
    is in, tagged as the parser's step)."""
    message_id = None
    if frame.traced and final.model_region is not None:
        message_id = f"{LC_ID_PREFIX}-{(await frame.parent_run(final.model_region)).run.run_id}"
    return message_id, child_config(await frame.parent_run(final.region), final.parser_tag)


@contextmanager
def _raising_original_errors() -> Iterator[None]:
    """Raise a failed step's own exception, as LangChain would, not Teola's wrapper of it."""
    try:
        yield
    except PrimitiveError as exc:
        raise original_error(exc) from None


def optimize(runnable: Any, runtime: Runtime | None = None, passes: Iterable[str] = PASSES) -> TeolaRunnable:
    """Wrap a LangChain runnable so its invocations run on Teola's runtime.

    ``passes`` picks the optimizations (all by default; ``()`` runs the traced graph unoptimized).
    Raises ``UnsupportedRunnableError`` for objects that are not runnables.
    """
    return TeolaRunnable(runnable, runtime, passes)
