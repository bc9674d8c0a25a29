"""The LLM-call families: [prompt |] model [| parser [| first n items]] as one LLM call, and an
engine-backed model alone. The model's own input conversion and the parser's own ``parse_result``
keep the native values; a line-list parser cut to its first ``n`` items is a bounded parse the
passes stream into its readers."""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.output_parsers import BaseOutputParser, MarkdownListOutputParser, NumberedListOutputParser
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda

from teola.adapters.langchain.compat import convert_input
from teola.adapters.langchain.models import bind_model, model_why_not
from teola.adapters.langchain.runs import ModelRun, ParserRun, PromptRun, StepRun, prompt_value, region_values
from teola.adapters.langchain.steps import ChildTag, DictValue, StepRecogniser, Traced, Value
from teola.optimizer.ir import ModuleKind, Node, Ref, Region
from teola.optimizer.ops import FnArgs, GenerateArgs, PrefixSpec
from teola.optimizer.values import CONTEXT_MARK, ChatMessage, Prompt, PromptPrefix

if TYPE_CHECKING:
    from teola.adapters.langchain.tracer import Tracer

# List parsers whose items are whole lines: the items of a text cut after a newline are the first
# items of the whole text, so they can be read while the LLM still writes.
LINE_LIST_PARSERS = (NumberedListOutputParser, MarkdownListOutputParser)
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def to_prompt(messages: Sequence[BaseMessage]) -> Prompt:
    """LangChain messages as a framework-free ``Prompt``."""
    converted = []
    for message in messages:
        if message.type not in _ROLES:
            raise ValueError(f"Teola's LLM engine takes system, human and ai messages, got a {message.type!r} message")
        if not isinstance(message.content, str):
            raise ValueError("Teola's LLM engine takes text messages; this one has multimodal content parts")
        converted.append(ChatMessage(_ROLES[message.type], message.content))
    return Prompt(messages=tuple(converted))


@dataclass(frozen=True)
class FinalGeneration:
    """An LLM call's text, finished by ``parser`` (or none): what streaming it as an answer needs.
    ``decode`` is the name of the call's decode primitive once lowered; ``parser_tag`` the tag of
    the parser's run under the run of ``region`` (the step the call is in; None: the chain's own),
    ``parser_region`` the region of that run; ``model_region`` the region of the model's run (whose
    id the streamed message chunks carry)."""

    decode: str
    chat: bool
    parser: BaseOutputParser | None
    parser_tag: ChildTag = None
    model_region: str | None = None
    region: str | None = None
    parser_region: str | None = None


def is_engine_model(step: Any) -> bool:
    """A chat model or LLM whose calls run on a Teola engine (a Teola class, or an OpenAI client of a server)."""
    return model_why_not(step) is None


class EngineModelRecogniser(StepRecogniser):
    """A chat model or LLM alone in the chain: one LLM call on what flows into it."""

    family = "a chat model or LLM"

    def accepts(self, step: Any) -> bool:
        return isinstance(step, BaseLanguageModel)

    def why_not(self, step: Any) -> str | None:
        return model_why_not(step)

    def read(self, tracer: "Tracer", step: Any, value: Traced, tag: ChildTag) -> Value:
        return read_llm_call(tracer, LLMCall(None, step, None, None, 1), value, [tag])


ENGINE_MODEL = EngineModelRecogniser()


def read_llm_call(tracer: "Tracer", llm_call: "LLMCall", value: Traced, tags: list[ChildTag]) -> Value:
    """[prompt |] model [| parser [| first cap items]] as one LLM call; the model's own input
    conversion and the parser's own ``parse_result`` keep the native values. A capped list
    is a bounded parse of the decode: what the passes pipeline into its readers. Each step of the
    call keeps its own run (``tags``: the child tag of each, in order)."""
    prompt, model, parser, cap = llm_call.prompt, llm_call.model, llm_call.parser, llm_call.cap
    name = tracer.name("generate")
    chat = isinstance(model, BaseChatModel)
    prefix = None
    if (prompt is not None and isinstance(value, DictValue)
            and (value.base is None or set(prompt.optional_variables) <= set(value.items))):
        names = [v for v in (*prompt.input_variables, *prompt.optional_variables)
                 if v in value.items or (value.base is not None and v in prompt.input_variables)]
        variables = [tracer.key(value, v) for v in names]
        inputs = {f"var{i}": v.source for i, v in enumerate(variables)}
        build_prompt = prompt_fn(prompt, model, names)
        early = [i for i, v in enumerate(variables) if v.early]
        if early and len(early) < len(names) and _renders_with_marks(prompt):
            prefix = PrefixSpec(_prefix_fn(prompt, model, names, early), tuple(f"var{i}" for i in early))
    elif prompt is not None:
        inputs = {"var0": tracer.materialize(value).source}
        build_prompt = prompt_fn(prompt, model, None)
    else:
        inputs = {"var0": tracer.materialize(value).source}
        build_prompt = lambda var0: model_prompt(model, var0)  # noqa: E731
    steps = " | ".join(type(r).__name__ for r in (prompt, model, parser) if r is not None)
    bound = bind_model(model)
    tracer.needs(bound.spec)
    call = GenerateArgs(bound.engine, bound.sampling, build_prompt, prefix)
    if cap is not None:
        call = replace(call, parse=_first_items_fn(finish_fn(chat, parser), cap), max_items=cap)
        tracer.graph.add(Node(f"{name}.llm", ModuleKind.GENERATE, inputs, ("items",), call))
        tracer.lowered.append(f"{name}.llm: {steps} | first {cap} items")
        _add_runs(tracer, llm_call, value, Ref(f"{name}.llm", "text"), Ref(f"{name}.llm", "items"), tags)
        return Value(Ref(f"{name}.llm", "items"))
    tracer.graph.add(Node(f"{name}.llm", ModuleKind.GENERATE, inputs, ("text",), call))
    tracer.graph.add(Node(name, ModuleKind.CALL, {"text": Ref(f"{name}.llm", "text")}, ("output",),
                        FnArgs(finish_fn(chat, parser), f"{type(model).__name__} output", pure=True)))
    tracer.lowered.append(f"{name}: {steps}")
    parser_tag = tags[(prompt is not None) + 1] if parser is not None else None
    model_region, parser_region = _add_runs(tracer, llm_call, value, Ref(f"{name}.llm", "text"), Ref(name, "output"),
                                            tags)
    tracer.generations[Ref(name, "output")] = FinalGeneration(f"{name}.llm", chat, parser, parser_tag, model_region,
                                                              tracer.region, parser_region)
    return Value(Ref(name, "output"))


def _add_runs(tracer: "Tracer", llm_call: "LLMCall", value: Traced, text: Ref, output: Ref,
              tags: list[ChildTag]) -> tuple[str, str | None]:
    """The runs of the call's steps, as regions: the prompt's on the call's input, the model's on
    the prompt's value until its text, the parser's on that text until its output, the cap's on
    the items (the parser's output is then the items kept: decoding stops once they are in).
    Returns the model's region and the parser's (None without a parser)."""
    prompt, model, parser = llm_call.prompt, llm_call.model, llm_call.parser
    chat = isinstance(model, BaseChatModel)
    inputs, assemble = region_values(value)
    tags = list(tags)

    def region(observer_of: Callable[[str, ChildTag], StepRun], reads: dict, gives: dict) -> str:
        name = tracer.region_name()
        tracer.add_region(Region(name, reads, gives, observer_of(name, tags.pop(0)), tracer.region))
        return name

    to_model = assemble if prompt is None else (lambda values: prompt_value(prompt, assemble(values)))
    if prompt is not None:
        region(lambda name, tag: PromptRun(prompt, tag, name, assemble), inputs, {})
    model_region = region(lambda name, tag: ModelRun(model, tag, name, to_model), inputs, {"text": text})
    parser_region = None
    if parser is not None:
        parser_region = region(lambda name, tag: ParserRun(parser, tag, name, model_region, chat), {"value": text},
                               {"value": output})
    if llm_call.cap is not None:
        region(lambda name, tag: StepRun(llm_call.steps[-1], tag, name), {"value": output}, {"value": output})
    return model_region, parser_region


@dataclass(frozen=True)
class LLMCall:
    """``length`` sequence steps that make one LLM call: [prompt |] model [| parser [| cap]]."""

    prompt: BasePromptTemplate | None
    model: BaseLanguageModel
    parser: BaseOutputParser | None
    cap: int | None
    length: int
    steps: tuple[Runnable, ...] = ()


def llm_call_at(steps: list[Runnable], i: int) -> LLMCall | None:
    """The LLM call that starts at ``steps[i]``: a prompt then an engine model, or an engine model
    then a parser; a line-list parser may be followed by the slice that keeps its first items."""
    prompt = steps[i] if isinstance(steps[i], BasePromptTemplate) else None
    at = i + (prompt is not None)
    if at >= len(steps) or not is_engine_model(steps[at]):
        return None
    parser = steps[at + 1] if at + 1 < len(steps) and isinstance(steps[at + 1], BaseOutputParser) else None
    if prompt is None and parser is None:
        return None  # a model alone is traced on its own
    cap = first_items(parser, steps[at + 2]) if parser is not None and at + 2 < len(steps) else None
    length = at - i + 1 + (parser is not None) + (cap is not None)
    return LLMCall(prompt, steps[at], parser, cap, length, tuple(steps[i:i + length]))


def first_items(parser: BaseOutputParser, step: Runnable) -> int | None:
    """``n`` where ``parser`` finds one item a line and ``step`` keeps its first ``n`` items
    (``itemgetter(slice(n))``): a bounded list whose items are final line by line."""
    if not isinstance(parser, LINE_LIST_PARSERS) or type(step) is not RunnableLambda:
        return None
    if not isinstance(step.func, operator.itemgetter) or not single_key(step.func):
        return None
    [key] = single_key(step.func)
    if not isinstance(key, slice) or key.start not in (None, 0) or key.step not in (None, 1):
        return None
    return key.stop if isinstance(key.stop, int) and key.stop > 0 else None


def single_key(getter: operator.itemgetter) -> tuple[Any] | None:
    """``(key,)`` for an ``itemgetter`` of exactly one key, else None."""
    keys = getter.__reduce__()[1]
    return keys if len(keys) == 1 else None


def model_prompt(model: BaseLanguageModel, value: Any) -> Prompt:
    """What ``model`` is sent for ``value``: its own input conversion, as a framework-free ``Prompt``."""
    prompt_value = convert_input(model, value)
    if isinstance(model, BaseChatModel):
        return to_prompt(prompt_value.to_messages())
    return Prompt(text=prompt_value.to_string())


def prompt_fn(prompt: BasePromptTemplate, model: BaseLanguageModel, names: list[str] | None) -> Callable[..., Prompt]:
    """The prompt's variables -> what the model receives, as prompt.invoke (its own input check and
    formatting) and the model's input conversion build it."""

    def build_prompt(**variables: Any) -> Prompt:
        values = {n: variables[f"var{i}"] for i, n in enumerate(names)} if names is not None else variables["var0"]
        return model_prompt(model, prompt_value(prompt, values))

    return build_prompt


def _renders_with_marks(prompt: BasePromptTemplate) -> bool:
    try:
        prompt.format_prompt(**{v: CONTEXT_MARK for v in prompt.input_variables})
    except Exception:  # a placeholder that takes messages, not text: no prefix to cut
        return False
    return True


def _prefix_fn(prompt: BasePromptTemplate, model: BaseLanguageModel, names: list[str],
               early: list[int]) -> Callable[..., PromptPrefix]:
    """The early variables -> the prompt rendered with a marker for every late one, cut at the first."""

    def build_prefix(**variables: Any) -> PromptPrefix:
        values = {n: CONTEXT_MARK for n in prompt.input_variables}
        values.update({names[i]: variables[f"var{i}"] for i in early})
        return PromptPrefix(model_prompt(model, prompt.format_prompt(**values)), CONTEXT_MARK)

    return build_prefix


def _first_items_fn(finish: Callable[[str], list], cap: int) -> Callable[[str], list]:
    def parse_first(text: str) -> list:
        return finish(text)[:cap]

    return parse_first


def finish_fn(chat: bool, parser: BaseOutputParser | None) -> Callable[[str], Any]:
    """Generated text -> what the model (and its parser) return natively."""

    def finish(text: str) -> Any:
        if parser is None:
            return AIMessage(content=text) if chat else text
        generation = ChatGeneration(message=AIMessage(content=text)) if chat else Generation(text=text)
        return parser.parse_result([generation])

    return finish
