"""``.map()`` of an LLM call: ``([prompt |] model [| parser]).map()`` on a list, as one batched call.

LangChain's ``RunnableEach`` batches its runnable over the list: a sequence's ``batch`` runs each
step over every item (all prompts, then all model calls, side by side on a thread pool, then all
parsers). Teola lowers it to one LLM call per item, sent together (a batched prefill and decode on
the model's engine, batched with every other query's calls), and reports the native run tree: the
``.map()``'s run, and per item the sequence's run with its prompt's, model's and parser's runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableSequence

from teola.adapters.langchain.compat import RunnableEach
from teola.adapters.langchain.llm_calls import LLMCall, finish_fn, llm_call_at, model_prompt, prompt_fn
from teola.adapters.langchain.models import bind_model
from teola.adapters.langchain.runs import ModelRun, PromptRun, StepRun, done, invoked_message, prompt_value
from teola.adapters.langchain.steps import ChildTag, RunHandle, StepFrame, StepRecogniser, Traced, Value, child_config
from teola.optimizer.ir import ModuleKind, Node, Ref, Region
from teola.optimizer.ops import FnArgs, GenerateArgs
from teola.optimizer.values import SKIPPED, Prompt

if TYPE_CHECKING:
    from teola.adapters.langchain.tracer import Tracer


def mapped_call(step: Any) -> LLMCall | None:
    """The LLM call a ``.map()`` runs on each item: its whole runnable a sequence that is one call
    (no first-items cut), else None."""
    if not isinstance(step, RunnableEach) or not isinstance(step.bound, RunnableSequence):
        return None
    call = llm_call_at(step.bound.steps, 0)
    return call if call is not None and call.length == len(step.bound.steps) and call.cap is None else None


class EachCallRecogniser(StepRecogniser):
    """``([prompt |] model [| parser]).map()`` on an engine-backed model: one call per item, together."""

    family = "a .map() of an LLM call"

    def accepts(self, step: Any) -> bool:
        return mapped_call(step) is not None

    def why_not(self, step: Any) -> str | None:
        return None

    def takes(self, value: Traced) -> bool:
        return isinstance(value, Value)  # a dict is not a list: it fails natively, so it runs natively

    def read(self, tracer: "Tracer", step: Any, value: Traced, tag: ChildTag) -> Value:
        call = mapped_call(step)
        prompt, model, parser = call.prompt, call.model, call.parser
        one = prompt_fn(prompt, model, None) if prompt is not None else (lambda var0: model_prompt(model, var0))

        def build_prompts(items: list[Any]) -> list[Prompt] | Any:
            return [one(var0=item) for item in items] if items else SKIPPED  # no item, no call

        finish = finish_fn(isinstance(model, BaseChatModel), parser)

        def finish_all(text: Any) -> list[Any]:
            return [] if text is SKIPPED else [finish(t) for t in text]

        bound = bind_model(model)
        tracer.needs(bound.spec)
        name = tracer.name("generate")
        items = tracer.materialize(value).source
        tracer.graph.add(Node(f"{name}.llm", ModuleKind.GENERATE, {"items": items}, ("text",),
                              GenerateArgs(bound.engine, bound.sampling, build_prompts, batch=True)))
        tracer.graph.add(Node(name, ModuleKind.CALL, {"text": Ref(f"{name}.llm", "text")}, ("output",),
                              FnArgs(finish_all, f"{type(model).__name__} outputs", pure=True, runs_on_skipped=("text",))))
        steps = " | ".join(type(r).__name__ for r in call.steps)
        tracer.lowered.append(f"{name}: ({steps}).map()")
        run = tracer.region_name()
        tracer.add_region(Region(run, {"value": items}, {"text": Ref(f"{name}.llm", "text"), "value": Ref(name, "output")},
                                 EachCallRun(step, tag, run, call), tracer.region))
        return Value(Ref(name, "output"))


EACH_CALL = EachCallRecogniser()



class EachCallRun(StepRun):
    """The runs of a lowered ``.map()`` of an LLM call: the ``.map()``'s own, and per item the
    sequence's, its prompt's (opened and closed at once, on the item), its model's (on the prompt's
    value, until the item's text) and its parser's (on the model's answer), tagged ``seq:step:N``
    as the sequence tags them."""

    def __init__(self, step: RunnableEach, tag: ChildTag, region: str, call: LLMCall) -> None:
        super().__init__(step, tag, region)
        self.call = call
        self.model_run = ModelRun(call.model, None, region, lambda values: values)
        self.parser_run = StepRun(call.parser, None, region) if call.parser is not None else None

    async def start(self, parent: RunHandle | None, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> RunHandle:
        handle = await super().start(parent, inputs, query)
        frame: StepFrame = query["frame"]
        sequence, prompt = StepRun(self.step.bound, None, self.region), self.call.prompt
        prompt_run = PromptRun(prompt, None, self.region) if prompt is not None else None
        items = []
        for item in inputs["value"]:
            config = child_config(handle, None)
            seq = RunHandle(config, await sequence.open(frame, config, item), item)
            to_model = item
            if prompt is not None:
                to_model = prompt_value(prompt, item)
                opened = await prompt_run.open(frame, child_config(seq, "seq:step:1"), item)
                await done(prompt_run.close(opened, to_model))
            model_config = child_config(seq, f"seq:step:{1 + (prompt is not None)}")
            run = await self.model_run.open(frame, model_config, to_model)
            items.append((seq, run, frame))
        return RunHandle(handle.config, handle.run, handle.input, tuple(items))

    async def end(self, handle: RunHandle, outputs: Mapping[str, Any]) -> None:
        chat = isinstance(self.call.model, BaseChatModel)
        texts = outputs["text"] if handle.items else []  # no item: no call, no text
        for (seq, run, frame), text, output in zip(handle.items, texts, outputs["value"]):
            if frame.streamed and chat:  # a chat model invoked in a streamed invocation streams too
                await self.model_run.end_stream(run, text, told=0, invoked=True)
            else:
                await done(self.model_run.close(run, text))
            if self.parser_run is not None:
                config = child_config(seq, f"seq:step:{2 + (self.call.prompt is not None)}")
                answer = invoked_message(text, run, frame.streamed) if chat else text
                await done(self.parser_run.close(await self.parser_run.open(frame, config, answer), output))
            await done(seq.run.on_chain_end(output))
        await super().end(handle, outputs)

    async def fail(self, handle: RunHandle, error: BaseException) -> None:
        for seq, run, _ in handle.items:
            await done(self.model_run.error(run, error))
            await done(seq.run.on_chain_error(error))
        await super().fail(handle, error)
