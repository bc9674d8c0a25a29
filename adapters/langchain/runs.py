"""The LangChain runs of a lowered chain: what its steps would report to callbacks natively.

Each traced step is a region (``teola.optimizer.regions``) whose observer opens the run the step's
own ``invoke`` opens (same callback manager set-up, name, run type, tags, metadata, inputs) under
its parent's run with the child tag its composite gives it, and closes it with the value Teola
computed. So LangSmith, Langfuse or any callback handler sees the native run tree: sequences,
parallels, passthroughs, lambdas, retrievers, prompts, models and parsers, nested as natively.
Steps Teola runs as-is open their own runs, under their parent region's run (``StepFrame.parent_run``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import BaseOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, GenerationChunk, LLMResult
from langchain_core.prompts import BasePromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.utils.utils import LC_ID_PREFIX

from teola.adapters.langchain import compat
from teola.adapters.langchain.steps import (ChildTag, RunHandle, StepFrame, Traced, Value, child_config, dict_parts,
                                            run_name)
from teola.optimizer.ir import Source
from teola.optimizer.regions import RegionObserver

Assemble = Callable[[Mapping[str, Any]], Any]


def value_of(values: Mapping[str, Any]) -> Any:
    """The one value of a region that reads one (``{"value": ...}``)."""
    return values["value"]


def region_values(value: Traced) -> tuple[dict[str, Source], Assemble]:
    """The sources a region reads for a traced value, and how to make the value of them again
    (a dict kept key by key is rebuilt in its keys' order, over its base)."""
    if isinstance(value, Value):
        return {"value": value.source}, value_of
    sources, rebuild = dict_parts(value)
    return sources, lambda values: rebuild(**values)


async def done(result: Any) -> Any:
    """``result``, awaited where it is awaitable (an async callback manager's calls are)."""
    return await result if hasattr(result, "__await__") else result


def _manager(frame: StepFrame, config: RunnableConfig, step: Any = None,
             metadata: Mapping[str, Any] | None = None) -> CallbackManager | AsyncCallbackManager:
    """The callback manager ``step.invoke(input, config)`` sets up: the config's callbacks, tags and
    metadata (plus ``metadata``), and the step's own callbacks, tags and metadata."""
    manager = AsyncCallbackManager if frame.is_async else CallbackManager
    return manager.configure(config.get("callbacks"), getattr(step, "callbacks", None), getattr(step, "verbose", False),
                             config.get("tags"), getattr(step, "tags", None),
                             {**(config.get("metadata") or {}), **(metadata or {})}, getattr(step, "metadata", None))


class StepRun(RegionObserver):
    """One step's run, opened under its parent region's run (or the chain's own) with ``tag``.

    ``region`` is the region's name (steps run as-is inside it wait for its run); ``assemble_in``
    and ``assemble_out`` make the step's input and output of the region's values.
    """

    def __init__(self, step: Runnable, tag: ChildTag, region: str, assemble_in: Assemble = value_of,
                 assemble_out: Assemble = value_of) -> None:
        self.step, self.tag, self.region = step, tag, region
        self.assemble_in, self.assemble_out = assemble_in, assemble_out

    def active(self, query: Mapping[str, Any]) -> bool:
        return query["frame"].traced

    async def start(self, parent: RunHandle | None, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> RunHandle:
        frame: StepFrame = query["frame"]
        base = parent or frame.root
        handle = base
        try:
            config = child_config(base, self.tag)
            input = self.assemble_in(inputs)
            handle = RunHandle(config, await self.open(frame, config, input), input)
        finally:  # steps run as-is inside the region go on under the closest run there is
            frame.started(self.region, handle)
        return handle

    async def end(self, handle: RunHandle, outputs: Mapping[str, Any]) -> None:
        await done(self.close(handle.run, self.assemble_out(outputs)))

    async def fail(self, handle: RunHandle, error: BaseException) -> None:
        await done(self.error(handle.run, error))

    async def open(self, frame: StepFrame, config: RunnableConfig, input: Any) -> Any:
        """Open the step's run on ``input``; return its run manager."""
        run_type = "parser" if isinstance(self.step, BaseOutputParser) else None  # as the parser's invoke says
        return await done(_manager(frame, config).on_chain_start(None, input, run_type=run_type,
                                                                  name=run_name(config, self.step)))

    def close(self, run: Any, output: Any) -> Any:
        """Close ``run`` with ``output``."""
        return run.on_chain_end(output)

    def error(self, run: Any, error: BaseException) -> Any:
        """Close ``run`` with ``error``."""
        return run.on_chain_error(error)


class PromptRun(StepRun):
    """A prompt template's run (run type ``prompt``): its output, the prompt value, is built here
    from its input, as the prompt itself builds it."""

    step: BasePromptTemplate

    async def open(self, frame: StepFrame, config: RunnableConfig, input: Any) -> Any:
        return await done(_manager(frame, config).on_chain_start(
            compat.prompt_serialized(self.step), input, run_type="prompt", name=run_name(config, self.step)))

    async def end(self, handle: RunHandle, outputs: Mapping[str, Any]) -> None:
        await done(handle.run.on_chain_end(prompt_value(self.step, handle.input)))


def prompt_value(prompt: BasePromptTemplate, input: Any) -> Any:
    """What ``prompt.invoke(input)`` returns, built without a run of its own."""
    return prompt.format_prompt(**compat.validate_input(prompt, input))


class RetrieverRun(StepRun):
    """A retriever's run, with the metadata the retriever adds to it."""

    step: BaseRetriever

    async def open(self, frame: StepFrame, config: RunnableConfig, input: Any) -> Any:
        manager = _manager(frame, config, self.step, compat.retriever_ls_params(self.step))
        return await done(manager.on_retriever_start(None, input, name=run_name(config, self.step)))

    def close(self, run: Any, output: Any) -> Any:
        return run.on_retriever_end(output)

    def error(self, run: Any, error: BaseException) -> Any:
        return run.on_retriever_error(error)


class EnsembleRun(RetrieverRun):
    """An ``EnsembleRetriever``'s run: its own callback set-up (the config's callbacks, tags and
    metadata, its tags and metadata; none of a retriever's tracing metadata)."""

    async def open(self, frame: StepFrame, config: RunnableConfig, input: Any) -> Any:
        manager = (AsyncCallbackManager if frame.is_async else CallbackManager).configure(
            config.get("callbacks"), None, False, config.get("tags", []), self.step.tags, config.get("metadata", {}),
            self.step.metadata)
        return await done(manager.on_retriever_start(None, input, name=run_name(config, self.step)))


class ModelRun(StepRun):
    """A chat model's or LLM's run: started on the messages (or text) it is sent, ended with the
    generated text as the model's own result. ``to_model_input`` turns the region's input into
    what the model receives (the prompt's value, where a prompt comes first). In a streamed
    invocation the run streams, as LangChain streams every model of it: each piece of a streamed
    answer is a new token (an answer Teola did not stream, one piece), and it ends with the
    generation a stream makes."""

    step: BaseLanguageModel

    def __init__(self, step: BaseLanguageModel, tag: ChildTag, region: str, to_model_input: Assemble) -> None:
        super().__init__(step, tag, region, to_model_input, lambda outputs: outputs["text"])
        self._pieces: dict[Any, int] = {}  # the streaming runs open, by run id: how many pieces told (one loop)

    async def start(self, parent: RunHandle | None, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> RunHandle:
        handle = await super().start(parent, inputs, query)
        if query["frame"].streamed:
            self._pieces[handle.run.run_id] = 0
        return handle

    async def delta(self, handle: RunHandle, key: str, piece: str) -> None:
        if handle.run.run_id not in self._pieces:  # Teola streams it (into its readers), the invocation does not
            return
        self._pieces[handle.run.run_id] += 1
        await done(handle.run.on_llm_new_token(piece, chunk=stream_chunk(self.step, piece, handle.run)))

    async def end(self, handle: RunHandle, outputs: Mapping[str, Any]) -> None:
        run_id = handle.run.run_id
        if run_id not in self._pieces:
            await super().end(handle, outputs)
            return
        await self.end_stream(handle.run, outputs["text"], told=self._pieces.pop(run_id))

    async def end_stream(self, run: Any, text: str, told: int, invoked: bool = False) -> None:
        """End a streaming ``run`` with ``text``, ``told`` pieces of it already reported (none: Teola did
        not stream it, and its whole text is its one piece). ``invoked``: a chat model invoked in a
        streamed invocation, which streams too but ends with its chunks added up as one generation."""
        if not told:
            await done(run.on_llm_new_token(text, chunk=stream_chunk(self.step, text, run)))
        if isinstance(self.step, BaseChatModel):  # a chat model's stream ends with an empty last chunk
            await done(run.on_llm_new_token("", chunk=stream_chunk(self.step, "", run, last=True)))
        generation = ChatGeneration(message=invoked_message(text, run, True)) if invoked else stream_chunk(self.step, text, run)
        await done(run.on_llm_end(LLMResult(generations=[[generation]])))

    async def fail(self, handle: RunHandle, error: BaseException) -> None:
        self._pieces.pop(handle.run.run_id, None)
        await super().fail(handle, error)

    async def open(self, frame: StepFrame, config: RunnableConfig, input: Any) -> Any:
        serialized, params, ls_params = compat.model_run_params(self.step)
        manager = _manager(frame, config, self.step, ls_params)
        prompt = compat.convert_input(self.step, input)
        if isinstance(self.step, BaseChatModel):
            runs = manager.on_chat_model_start(serialized, [prompt.to_messages()], invocation_params=params,
                                               options={"stop": None}, name=config.get("run_name"), batch_size=1)
        else:
            runs = manager.on_llm_start(serialized, [prompt.to_string()], invocation_params=params,
                                        options={"stop": None}, name=config.get("run_name"), batch_size=1)
        [run] = await done(runs)
        return run

    def close(self, run: Any, output: Any) -> Any:
        generation = (ChatGeneration(message=model_message(output, run)) if isinstance(self.step, BaseChatModel)
                      else Generation(text=output))
        return run.on_llm_end(LLMResult(generations=[[generation]]))

    def error(self, run: Any, error: BaseException) -> Any:
        return run.on_llm_error(error, response=compat.model_error_result(self.step, error))


def stream_chunk(model: BaseLanguageModel, text: str, run: Any, last: bool = False) -> GenerationChunk:
    """A piece of ``model``'s stream in ``run``, as its ``stream`` reports it: a message chunk from a
    chat model (``stream_message``), a text chunk from an LLM."""
    if not isinstance(model, BaseChatModel):
        return GenerationChunk(text=text)
    return ChatGenerationChunk(message=stream_message(text, run, last))


def stream_message(text: str, run: Any, last: bool = False) -> AIMessageChunk:
    """A message chunk a chat model streams in ``run`` (its id names the run; the ``last`` one says so)."""
    return AIMessageChunk(content=text, id=f"{LC_ID_PREFIX}-{run.run_id}", chunk_position="last" if last else None)


def model_message(text: str, run: Any, streamed: bool = False) -> AIMessage | AIMessageChunk:
    """The message a chat model returns for ``text`` in ``run`` (its id names the run): ``invoke``'s,
    or, ``streamed``, what its stream adds up to."""
    if streamed:
        return stream_message(text, run, last=True)
    return AIMessage(content=text, id=f"{LC_ID_PREFIX}-{run.run_id}-0")


def invoked_message(text: str, run: Any, streamed: bool = False) -> AIMessage:
    """The message a chat model's ``invoke`` returns in ``run``; in a streamed invocation it streams, and
    returns its chunks added up (with the id its chunks carry)."""
    return AIMessage(content=text, id=stream_message(text, run).id) if streamed else model_message(text, run)


class ParserRun(StepRun):
    """An output parser's run on the model's answer: the message the model returned in its run
    (the region ``model_region``), or the text an LLM returned."""

    def __init__(self, step: Runnable, tag: ChildTag, region: str, model_region: str, chat: bool) -> None:
        super().__init__(step, tag, region)
        self.model_region, self.chat = model_region, chat

    async def start(self, parent: RunHandle | None, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> RunHandle:
        if self.chat:
            frame: StepFrame = query["frame"]
            model = await frame.parent_run(self.model_region)
            inputs = {"value": model_message(inputs["value"], model.run, frame.streamed)}
        return await super().start(parent, inputs, query)


class EachRun(StepRun):
    """``step.map()`` over a list: its own run, then one run of the mapped step per item, as
    ``RunnableEach`` batches them (``item_run`` opens and closes each)."""

    def __init__(self, step: Runnable, tag: ChildTag, region: str, item_run: StepRun) -> None:
        super().__init__(step, tag, region)
        self.item_run = item_run

    async def start(self, parent: RunHandle | None, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> RunHandle:
        handle = await super().start(parent, inputs, query)
        frame: StepFrame = query["frame"]
        items = []
        for item in inputs["value"]:
            config = child_config(handle, None)
            items.append(await self.item_run.open(frame, config, item))
        return RunHandle(handle.config, handle.run, handle.input, tuple(items))

    async def end(self, handle: RunHandle, outputs: Mapping[str, Any]) -> None:
        for run, output in zip(handle.items, outputs["value"]):
            await done(self.item_run.close(run, output))
        await super().end(handle, outputs)

    async def fail(self, handle: RunHandle, error: BaseException) -> None:
        for run in handle.items:
            await done(self.item_run.error(run, error))
        await super().fail(handle, error)
