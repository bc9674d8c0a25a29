"""Running a traced chain as one LangChain invocation: the chain's run, then the plan on Teola's scheduler.

``ChainPlan`` does what a LangChain composite does around its children (start the chain run,
hand each child a tagged child config, end or error the run) and leaves the children's order to
Teola's graph scheduler. A plan with engine primitives runs on the shared runtime; a plan made
only of calls (a chain Teola cannot lower) runs on the caller's own event loop, or on a private
one for a synchronous caller (which must not be inside a running loop), so a step that awaits the
caller's loop objects still works.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import RunnableConfig, ensure_config

from teola.adapters.langchain import StepFrame
from teola.adapters.langchain.compat import (STREAMING_HANDLERS, get_async_callback_manager_for_config,
                                             get_callback_manager_for_config, get_executor_for_config)
from teola.optimizer.ir import Graph
from teola.optimizer.ops import CALLABLE, EngineId, EngineKind
from teola.runtime.engine_scheduler import CallablePool
from teola.runtime.admission import query_context
from teola.runtime.errors import original_error
from teola.runtime.graph_scheduler import GraphScheduler
from teola.runtime.runtime import Runtime
from teola.runtime.traces import deliver

# The local calls of plans that run off the runtime (small pure functions: merging a parallel's dict).
_LOCAL_POOL = CallablePool(EngineId(EngineKind.CALLABLE, "langchain-local"), max_workers=8)


def streams_tokens_to_a_handler(config: RunnableConfig | None) -> bool:
    """Whether a handler that takes models' tokens as they come (LangGraph's ``messages`` stream mode,
    ``astream_events``, ``astream_log``) watches an invocation with ``config``: LangChain's chat models
    stream their tokens to it even when invoked, which a plan made for a whole answer does not."""
    callbacks = ensure_config(config).get("callbacks")  # such handlers are only ever passed in, never configured
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else callbacks or []
    return any(isinstance(handler, STREAMING_HANDLERS) for handler in handlers)


class ChainPlan:
    """A prepared plan of one runnable, invoked the way LangChain invokes a composite.

    ``runtime`` is where a plan with engine primitives runs; ``None`` means the plan holds only
    calls and runs on the caller's loop. Each run's trace goes to the caller's ``record_traces()``.
    """

    def __init__(self, plan: Graph, runtime: Runtime | None) -> None:
        self.plan = plan
        self.runtime = runtime
        self.scheduler = runtime.prepare(plan) if runtime is not None else GraphScheduler(plan, {CALLABLE.name: _LOCAL_POOL})

    def step_context(self) -> contextvars.Context:
        """The context this plan's steps run in: the caller's, marked as inside a query where the plan
        runs as an admitted query on the runtime (so a step that runs another app shares its slot)."""
        return query_context() if self.runtime is not None else contextvars.copy_context()

    def invoke(self, name: str, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any]) -> Any:
        """Run the plan for one input from synchronous code, inside the chain's own run."""
        config = ensure_config(config)
        run_manager = get_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or name, run_id=config.pop("run_id", None))
        error = None
        try:
            with get_executor_for_config(config) as executor:
                frame = StepFrame(config, run_manager, False, self.step_context(), executor, kwargs)
                output = self.run({"input": input, "frame": frame})["output"]
        except BaseException as exc:
            error = original_error(exc)
            run_manager.on_chain_error(error)
            if error is exc:
                raise
        if error is not None:  # raised outside the handler, so Teola's wrapper is not its context
            raise error
        run_manager.on_chain_end(output)
        return output

    async def ainvoke(self, name: str, input: Any, config: RunnableConfig | None, kwargs: dict[str, Any]) -> Any:
        """Run the plan for one input from async code, inside the chain's own run."""
        config = ensure_config(config)
        run_manager = await get_async_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or name, run_id=config.pop("run_id", None))
        frame = StepFrame(config, run_manager, True, self.step_context(), None, kwargs)
        error = None
        try:
            outputs = await self.arun({"input": input, "frame": frame})
        except BaseException as exc:
            error = original_error(exc)
            await run_manager.on_chain_error(error)
            if error is exc:
                raise
        if error is not None:
            raise error
        await run_manager.on_chain_end(outputs["output"])
        return outputs["output"]

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The plan's outputs for ``inputs`` (``input`` and ``frame``), from synchronous code; no chain run."""
        if self.runtime is not None:
            return self.runtime.execute(self.scheduler, inputs)
        loop = asyncio.new_event_loop()  # a call-only plan runs on a loop of the calling thread's own
        try:
            outputs, trace = loop.run_until_complete(self.scheduler.run(inputs))
        finally:
            loop.close()
        deliver(trace)
        return outputs

    async def arun(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The plan's outputs for ``inputs``, from async code; no chain run."""
        if self.runtime is not None:
            return await self.runtime.aexecute(self.scheduler, inputs)
        outputs, trace = await self.scheduler.run(inputs)
        deliver(trace)
        return outputs
