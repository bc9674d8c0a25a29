"""LangChain adapter: traces an LCEL runnable into a module graph.

It runs nothing itself. Tracing follows the runnables' own structure (``steps``, ``steps__``,
``mapper``, ``bound``, ``func``) and passes values symbolically: a ``RunnableParallel``'s output is a
dict of per-key values, so a prompt reads only the keys it formats and an ``itemgetter`` picks a
key without a node. Data edges are therefore the true ones: two ``.assign`` steps that read
different keys run side by side, and a question-first prompt can be prefilled while retrieval runs.

What Teola lowers into primitives: a prompt template followed by a chat model or LLM backed by a
Teola engine (and an output parser after it; a numbered or markdown list parser cut to its first
``n`` items by ``itemgetter(slice(n))`` becomes a bounded list the passes stream into its readers,
stopping the decode after ``n`` items), a Teola engine-backed model alone, and a retriever
over a ``TeolaVectorStore`` (alone, or ``.map()``-ed over a list of queries). Everything else runs
unchanged as a ``call``: the step's own ``invoke``/``ainvoke`` with the child config LangChain would
give it, so its callbacks, tags and run tree are its own.

Engines are recognised by what they carry: a model has ``teola_engine`` (an ``EngineId``) and
``teola_sampling``, a vector store ``index_engine`` and ``to_documents``.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import operator
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.output_parsers import BaseOutputParser, MarkdownListOutputParser, NumberedListOutputParser
from langchain_core.prompts import BasePromptTemplate
from langchain_core.runnables import (Runnable, RunnableConfig, RunnableLambda, RunnableParallel, RunnablePassthrough,
                                      RunnableSequence)
from langchain_core.runnables import RunnableAssign, patch_config
from langchain_core.vectorstores import VectorStoreRetriever

from teola.adapters import langchain_compat
from teola.adapters.langchain_compat import (RunnableEach, convert_input, coro_with_context, set_config_context,
                                             validate_input)

from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref, Source
from teola.optimizer.ops import FnArgs, GenerateArgs, PrefixSpec, RetrieveArgs
from teola.optimizer.values import CONTEXT_MARK, ChatMessage, Prompt, PromptPrefix
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


@dataclass
class StepFrame:
    """One invocation's LangChain context, handed to every step Teola runs as-is.

    ``run_manager`` is the invocation's chain run (sync or async); a step gets a child config of it
    tagged as LangChain tags it. Sync steps run in ``executor`` (LangChain's executor for the
    config, so ``max_concurrency`` holds) inside a copy of the caller's ``context``.
    """

    config: RunnableConfig
    run_manager: Any
    is_async: bool
    context: contextvars.Context
    executor: Executor | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def step_call(step: Runnable, tag: str, first: bool = False) -> Callable[..., Any]:
    """A coroutine function running ``step`` exactly as a LangChain composite runs its child:
    with a child config tagged ``tag``, in its config context; ``first`` steps get the call's kwargs."""

    async def call(input: Any, frame: StepFrame) -> Any:
        config = patch_config(frame.config, callbacks=frame.run_manager.get_child(tag))
        kwargs = frame.kwargs if first else {}
        if frame.is_async:
            with set_config_context(config) as context:
                return await coro_with_context(step.ainvoke(input, config, **kwargs), context, create_task=True)

        def invoke() -> Any:
            with set_config_context(config) as context:
                return context.run(step.invoke, input, config, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(frame.executor, frame.context.copy().run, invoke)

    return call


class UnsupportedRunnableError(TypeError):
    """``optimize()`` was given something that is not a LangChain runnable."""


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
                   FnArgs(_keyed_dict(keys), "RunnableParallel output", pure=True)))
    graph.set_output("output", Ref("merge", "output"))
    return graph


def _keyed_dict(keys: list[str]) -> Callable[..., dict]:
    def merge(**values: Any) -> dict:
        return {key: values[f"key{i}"] for i, key in enumerate(keys)}

    return merge


@dataclass(frozen=True)
class FinalGeneration:
    """The chain's output is one LLM call's text, finished by ``parser`` (or none): what streaming
    the answer needs. ``decode`` is the name of the call's decode primitive once lowered."""

    decode: str
    chat: bool
    parser: BaseOutputParser | None


@dataclass
class ChainReading:
    """What the adapter read: the module graph, what was lowered, and the LLM call that gives the
    chain's output, if one does."""

    graph: Graph
    lowered: list[str] = field(default_factory=list)
    final: FinalGeneration | None = None


def read_runnable(runnable: Any) -> ChainReading:
    """Trace ``runnable`` (any LCEL composition) into a module graph with inputs ``input`` (the
    chain's input) and ``frame`` (a ``StepFrame``) and one output, ``output``."""
    langchain_compat.check_version()
    if not isinstance(runnable, Runnable):
        raise UnsupportedRunnableError(
            f"optimize() takes a LangChain runnable (an LCEL chain such as prompt | model | parser), "
            f"got {type(runnable).__module__}.{type(runnable).__name__}")
    tracer = _Tracer()
    out = tracer.materialize(tracer.trace(runnable, Value(INPUT, early=True), "teola:chain"))
    tracer.graph.set_output("output", out.source)
    return ChainReading(tracer.graph, tracer.lowered, tracer.generations.get(out.source))


def is_engine_model(step: Any) -> bool:
    """A chat model or LLM served by a Teola engine."""
    return isinstance(step, BaseLanguageModel) and hasattr(step, "teola_engine") and hasattr(step, "teola_sampling")


def is_engine_retriever(step: Any) -> bool:
    """A plain similarity retriever over a vector store served by Teola's engines."""
    return (isinstance(step, VectorStoreRetriever) and step.search_type == "similarity"
            and set(step.search_kwargs) <= {"k"} and hasattr(step.vectorstore, "to_documents")
            and hasattr(step.vectorstore, "index_engine")
            and hasattr(step.vectorstore.embeddings, "teola_engine"))


class _Tracer:
    def __init__(self) -> None:
        self.graph = Graph(inputs=("input", "frame"))
        self.lowered: list[str] = []
        self.generations: dict[Source, FinalGeneration] = {}
        self._ids = itertools.count(1)

    def _name(self, base: str) -> str:
        return f"{base}{next(self._ids)}"

    def trace(self, step: Runnable, value: Traced, tag: str) -> Traced:
        if isinstance(step, RunnableSequence):
            return self._sequence(step.steps, value)
        if isinstance(step, RunnableParallel):
            return DictValue({key: self.materialize(self.trace(branch, value, f"map:key:{key}"))
                              for key, branch in step.steps__.items()})
        if type(step) is RunnablePassthrough and step.func is None and step.afunc is None:
            return value
        if isinstance(step, RunnableAssign):
            value = value if isinstance(value, DictValue) else DictValue({}, base=value)
            added = self.trace(step.mapper, value, "assign")
            return DictValue({**value.items, **added.items}, value.base)
        if type(step) is RunnableLambda and isinstance(step.func, operator.itemgetter) and _single_key(step.func):
            return self.key(value, _single_key(step.func)[0])
        if is_engine_retriever(step) and isinstance(value, Value):
            return self._retrieve(step, value.source, batch=False)
        if isinstance(step, RunnableEach) and is_engine_retriever(step.bound) and isinstance(value, Value):
            return self._retrieve(step.bound, value.source, batch=True)
        if is_engine_model(step):
            return self._generate(None, step, value, None, None)
        return self._call(step, value, tag)

    def _sequence(self, steps: list[Runnable], value: Traced) -> Traced:
        i = 0
        while i < len(steps):
            call = _llm_call_at(steps, i)
            if call is not None:
                value = self._generate(call.prompt, call.model, value, call.parser, call.cap)
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
        name = self._name("get")
        self.graph.add(Node(name, ModuleKind.CALL, {"input": source.source}, ("output",),
                            FnArgs(lambda input: input[key], f"[{key!r}]", pure=True)))
        return Value(Ref(name, "output"), early=source.early)

    def materialize(self, value: Traced) -> Value:
        """A dict value as one node's output: a plain dict, keys in LangChain's order (``.assign``
        keeps the input's keys first: ``{**input, **added}``)."""
        if isinstance(value, Value):
            return value
        name = self._name("dict")
        keys = list(value.items)
        inputs: dict[str, Source] = {f"key{i}": value.items[k].source for i, k in enumerate(keys)}
        merge = _keyed_dict(keys)
        if value.base is not None:
            inputs["base"] = value.base.source
            fn = lambda base, **items: {**base, **merge(**items)}  # noqa: E731
        else:
            fn = merge
        self.graph.add(Node(name, ModuleKind.CALL, inputs, ("output",), FnArgs(fn, "dict", pure=True)))
        return Value(Ref(name, "output"), early=all(v.early for v in value.items.values()) and
                     (value.base is None or value.base.early))

    def _call(self, step: Runnable, value: Traced, tag: str) -> Value:
        name = self._name("call")
        self.graph.add(Node(name, ModuleKind.CALL, {"input": self.materialize(value).source, "frame": FRAME}, ("output",),
                            FnArgs(step_call(step, tag), step.get_name())))
        return Value(Ref(name, "output"))

    def _retrieve(self, retriever: VectorStoreRetriever, query: Source, batch: bool) -> Value:
        name = self._name("retrieve")
        store = retriever.vectorstore
        self.graph.add(Node(name, ModuleKind.RETRIEVE, {"query": query}, ("output",), RetrieveArgs(
            store.embeddings.teola_engine, store.index_engine, retriever.search_kwargs.get("k", 4),
            lambda hits, query: store.to_documents(hits), batch=batch)))
        self.lowered.append(f"{name}: {type(retriever).__name__} over {type(store).__name__}")
        return Value(Ref(name, "output"))

    def _generate(self, prompt: BasePromptTemplate | None, model: BaseLanguageModel, value: Traced,
                  parser: BaseOutputParser | None, cap: int | None) -> Value:
        """[prompt |] model [| parser [| first cap items]] as one LLM call; the model's own input
        conversion and the parser's own ``parse_result`` keep the native values. A capped list
        is a bounded parse of the decode: what the passes pipeline into its readers."""
        name = self._name("generate")
        chat = isinstance(model, BaseChatModel)
        prefix = None
        if (prompt is not None and isinstance(value, DictValue)
                and (value.base is None or set(prompt.optional_variables) <= set(value.items))):
            names = [v for v in (*prompt.input_variables, *prompt.optional_variables)
                     if v in value.items or (value.base is not None and v in prompt.input_variables)]
            variables = [self.key(value, v) for v in names]
            inputs = {f"var{i}": v.source for i, v in enumerate(variables)}
            build_prompt = _prompt_fn(prompt, model, names)
            early = [i for i, v in enumerate(variables) if v.early]
            if early and len(early) < len(names) and _renders_with_marks(prompt):
                prefix = PrefixSpec(_prefix_fn(prompt, model, names, early), tuple(f"var{i}" for i in early))
        elif prompt is not None:
            inputs = {"var0": self.materialize(value).source}
            build_prompt = _prompt_fn(prompt, model, None)
        else:
            inputs = {"var0": self.materialize(value).source}
            build_prompt = lambda var0: _model_prompt(model, var0)  # noqa: E731
        steps = " | ".join(type(r).__name__ for r in (prompt, model, parser) if r is not None)
        call = GenerateArgs(model.teola_engine, model.teola_sampling, build_prompt, prefix)
        if cap is not None:
            call = replace(call, parse=_first_items_fn(_finish_fn(chat, parser), cap), max_items=cap)
            self.graph.add(Node(f"{name}.llm", ModuleKind.GENERATE, inputs, ("items",), call))
            self.lowered.append(f"{name}.llm: {steps} | first {cap} items")
            return Value(Ref(f"{name}.llm", "items"))
        self.graph.add(Node(f"{name}.llm", ModuleKind.GENERATE, inputs, ("text",), call))
        self.graph.add(Node(name, ModuleKind.CALL, {"text": Ref(f"{name}.llm", "text")}, ("output",),
                            FnArgs(_finish_fn(chat, parser), f"{type(model).__name__} output", pure=True)))
        self.lowered.append(f"{name}: {steps}")
        self.generations[Ref(name, "output")] = FinalGeneration(f"{name}.llm", chat, parser)
        return Value(Ref(name, "output"))


@dataclass(frozen=True)
class _LLMSteps:
    """``length`` sequence steps that make one LLM call: [prompt |] model [| parser [| cap]]."""

    prompt: BasePromptTemplate | None
    model: BaseLanguageModel
    parser: BaseOutputParser | None
    cap: int | None
    length: int


def _llm_call_at(steps: list[Runnable], i: int) -> _LLMSteps | None:
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
    return _LLMSteps(prompt, steps[at], parser, cap, at - i + 1 + (parser is not None) + (cap is not None))


def first_items(parser: BaseOutputParser, step: Runnable) -> int | None:
    """``n`` where ``parser`` finds one item a line and ``step`` keeps its first ``n`` items
    (``itemgetter(slice(n))``): a bounded list whose items are final line by line."""
    if not isinstance(parser, LINE_LIST_PARSERS) or type(step) is not RunnableLambda:
        return None
    if not isinstance(step.func, operator.itemgetter) or not _single_key(step.func):
        return None
    [key] = _single_key(step.func)
    if not isinstance(key, slice) or key.start not in (None, 0) or key.step not in (None, 1):
        return None
    return key.stop if isinstance(key.stop, int) and key.stop > 0 else None


def _single_key(getter: operator.itemgetter) -> tuple[Any] | None:
    """``(key,)`` for an ``itemgetter`` of exactly one key, else None."""
    keys = getter.__reduce__()[1]
    return keys if len(keys) == 1 else None


def _model_prompt(model: BaseLanguageModel, value: Any) -> Prompt:
    prompt_value = convert_input(model, value)
    if isinstance(model, BaseChatModel):
        return to_prompt(prompt_value.to_messages())
    return Prompt(text=prompt_value.to_string())


def _prompt_fn(prompt: BasePromptTemplate, model: BaseLanguageModel, names: list[str] | None) -> Callable[..., Prompt]:
    """The prompt's variables -> what the model receives, as prompt.invoke (its own input check and
    formatting) and the model's input conversion build it."""

    def build_prompt(**variables: Any) -> Prompt:
        values = {n: variables[f"var{i}"] for i, n in enumerate(names)} if names is not None else variables["var0"]
        return _model_prompt(model, prompt.format_prompt(**validate_input(prompt, values)))

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
        return PromptPrefix(_model_prompt(model, prompt.format_prompt(**values)), CONTEXT_MARK)

    return build_prefix


def _first_items_fn(finish: Callable[[str], list], cap: int) -> Callable[[str], list]:
    def parse_first(text: str) -> list:
        return finish(text)[:cap]

    return parse_first


def _finish_fn(chat: bool, parser: BaseOutputParser | None) -> Callable[[str], Any]:
    """Generated text -> what the model (and its parser) return natively."""

    def finish(text: str) -> Any:
        if parser is None:
            return AIMessage(content=text) if chat else text
        generation = ChatGeneration(message=AIMessage(content=text)) if chat else Generation(text=text)
        return parser.parse_result([generation])

    return finish
