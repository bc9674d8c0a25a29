"""The LlamaIndex spans and instrumentation events of a lowered query engine, as natively.

LlamaIndex reports a query through its instrumentation dispatcher: a span per instrumented method
(``RetrieverQueryEngine.query`` > ``_query`` > ``VectorIndexRetriever.retrieve`` > ``_retrieve``
> ``<Embedding>.get_query_embedding`` ...; ``CompactAndRefine.synthesize`` > ``get_response`` >
``<LLM>.predict`` > ``chat``/``complete``) and events inside them (``RetrievalStartEvent``,
``EmbeddingEndEvent``, ``LLMChatStartEvent`` ...), which Phoenix, Langfuse and any span or event
handler turn into a trace. Lowered, those methods never run; the adapter declares their spans as
regions (``teola.optimizer.regions``) whose observers (``MethodSpan``) report each span and its
events through the dispatcher's public API (``span_enter``/``span_exit``/``span_drop``, ``event``),
named, nested and filled as the native method would. The query's own span is opened by
``query_span`` around the whole query, named after the wrapped engine. The same observers start the
legacy callback events (``CallbackManager``) those methods start (``CallbackEvent``), through the
components' own callback managers, nested by explicit parent ids.

Internal helper spans (``TokenTextSplitter.split_text`` while packing the context,
``DefaultRefineProgram.__call__`` around the LLM call) and ``CHUNKING`` callback events are not
reproduced: the LLM call's spans go straight under ``get_response``.
"""

from __future__ import annotations

import abc
import inspect
import sys
import uuid
from contextlib import contextmanager
from collections import ChainMap
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from llama_index.core.base.llms.types import ChatMessage as LIChatMessage
from llama_index.core.base.llms.types import ChatResponse, CompletionResponse, MessageRole
from llama_index.core.async_utils import run_jobs
from llama_index.core.callbacks.base import BASE_TRACE_EVENT
from llama_index.core.callbacks.schema import LEAF_EVENTS, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import DISPATCHER_SPAN_DECORATED_ATTR, active_instrument_tags
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent
from llama_index.core.instrumentation.events.llm import (LLMChatEndEvent, LLMChatInProgressEvent, LLMChatStartEvent,
                                                         LLMCompletionEndEvent, LLMCompletionInProgressEvent,
                                                         LLMCompletionStartEvent, LLMPredictEndEvent,
                                                         LLMPredictStartEvent)
from llama_index.core.instrumentation.events.query import QueryEndEvent, QueryStartEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.instrumentation.events.synthesis import (GetResponseEndEvent, GetResponseStartEvent,
                                                               SynthesizeEndEvent, SynthesizeStartEvent)
from llama_index.core.instrumentation.events.span import SpanDropEvent
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import NullSpanHandler
from llama_index.core.query_engine import (CitationQueryEngine, RetrieverQueryEngine, RouterQueryEngine,
                                           SubQuestionQueryEngine)
from llama_index.core.query_engine.sub_question_query_engine import SubQuestionAnswerPair
from llama_index.core.schema import MetadataMode, QueryBundle

from teola.adapters.llama_index import compat as li
from teola.optimizer.ir import Ref, Source
from teola.optimizer.regions import RegionObserver
from teola.optimizer.values import SKIPPED

if TYPE_CHECKING:
    from teola.adapters.llama_index.reading import AppReading

Events = Callable[[Mapping[str, Any], Mapping[str, Any]], Sequence[BaseEvent]]
Call = Callable[[Mapping[str, Any]], tuple[tuple, dict]]
Progress = Callable[[Mapping[str, Any], str, str], Sequence[BaseEvent]]


def reports_its_own_span(method: Callable) -> Callable:
    """Mark a method of a LlamaIndex subclass as reporting its span itself, so that LlamaIndex's
    ``DispatcherSpanMixin`` does not wrap it in a span named after the subclass."""
    setattr(method, DISPATCHER_SPAN_DECORATED_ATTR, True)
    return method


def listening(engine: Any) -> bool:
    """Whether any span or event handler other than LlamaIndex's null ones is attached anywhere, or
    a legacy callback handler to ``engine``'s callback manager."""
    root = get_dispatcher()
    dispatchers = [root, *root.manager.dispatchers.values()] if root.manager else [root]
    return bool(engine.callback_manager.handlers) or any(
        d.event_handlers or any(not isinstance(h, NullSpanHandler) for h in d.span_handlers) for d in dispatchers)


@dataclass(frozen=True)
class QuerySpans:
    """One query's place in the span tree: the span its top-level spans go under, whether it was
    asked with ``aquery`` (its components then report their async methods' spans), the
    instrument tags active where it was asked (``instrument_tags``: every span of it carries them)
    and the legacy callback event its callback events go under."""

    parent: str
    is_async: bool = False
    tags: Mapping[str, Any] = field(default_factory=dict)
    callback_parent: str = BASE_TRACE_EVENT


@dataclass(frozen=True)
class ReadingPlace:
    """Where the reader of a streamed answer began reading it: the span active there (None: none),
    the legacy callback event events started there go under, the instrument tags active there."""

    span: str | None
    callback_parent: str
    tags: Mapping[str, Any]


def reading_place() -> ReadingPlace:
    """The place the calling code runs in."""
    return ReadingPlace(active_span_id.get(), li.callback_parent(), dict(active_instrument_tags.get()))


def async_name(method: str) -> str:
    """The async twin of an instrumented method: ``retrieve`` -> ``aretrieve``, ``_query`` -> ``_aquery``."""
    return f"_a{method[1:]}" if method.startswith("_") else f"a{method}"


@dataclass(frozen=True)
class SpanSite:
    """Where a span is reported from: its ``name`` (``Class.method``, or a function's qualified name),
    the ``signature`` its arguments bind to, the ``dispatcher`` of the module that defines it, and the
    ``instance`` (None: a function)."""

    name: str
    signature: inspect.Signature
    dispatcher: Any
    instance: Any = None


def method_site(instance: Any, method: str) -> SpanSite:
    """The site of ``instance.method``: its dispatcher is its defining module's, as its ``@dispatcher.span`` uses."""
    module = getattr(getattr(type(instance), method), "__module__", None) or "root"
    return SpanSite(f"{type(instance).__name__}.{method}", inspect.signature(getattr(instance, method)),
                    get_dispatcher(module), instance)


@dataclass(frozen=True)
class SpanHandle:
    """An open span: its id and site, the arguments it was opened with, the region's input values,
    the legacy callback event it started (if one) and the one the events inside it go under."""

    id: str
    site: SpanSite
    bound: inspect.BoundArguments
    inputs: Mapping[str, Any]
    callback_id: str | None = None
    callback_parent: str = BASE_TRACE_EVENT


@dataclass(frozen=True)
class CallbackEvent:
    """The legacy callback event (``CallbackManager``, ``TokenCountingHandler`` ...) a span's method
    starts through ``manager``: its type and payloads (``end`` None: started and ended at once, as
    ``TEMPLATING``); a non-leaf one holds the events started inside the span."""

    type: CBEventType
    manager: Any
    start: Callable[[Mapping[str, Any]], dict]
    end: Callable[[Mapping[str, Any], Mapping[str, Any]], dict] | None = None

    def open(self, parent: str, inputs: Mapping[str, Any]) -> str | None:
        """Start the event under ``parent``; its id, while it is open."""
        event = self.manager.on_event_start(self.type, self.start(inputs), parent_id=parent)
        if self.end is not None:
            return event
        self.manager.on_event_end(self.type, None, event_id=event)
        return None

    def close(self, event: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """End the event with its outputs."""
        self.manager.on_event_end(self.type, self.end(inputs, outputs), event_id=event)

    def fail(self, event: str, error: BaseException) -> None:
        """End the event with the error, as ``CallbackManager.event`` does."""
        self.manager.on_event_end(self.type, {EventPayload.EXCEPTION: error}, event_id=event)


def _open(site: SpanSite, args: tuple, kwargs: dict, parent: str | None, inputs: Mapping[str, Any],
          tags: Mapping[str, Any], callback_parent: str = BASE_TRACE_EVENT) -> SpanHandle:
    bound = site.signature.bind(*args, **kwargs)
    span = f"{site.name}-{uuid.uuid4()}"
    site.dispatcher.span_enter(id_=span, bound_args=bound, instance=site.instance, parent_id=parent, tags=dict(tags))
    return SpanHandle(span, site, bound, inputs, callback_parent=callback_parent)


def _emit(handle: SpanHandle, events: Sequence[BaseEvent]) -> None:
    for event in events:
        event.span_id = handle.id
        handle.site.dispatcher.event(event)


def _exit(handle: SpanHandle, result: Any) -> None:
    handle.site.dispatcher.span_exit(id_=handle.id, bound_args=handle.bound, instance=handle.site.instance,
                                     result=result)


def _enter(handle: SpanHandle) -> None:
    """Make the framework code run from here on (this context) report under ``handle``."""
    active_span_id.set(handle.id)  # what LlamaIndex's own spans take as their parent
    li.enter_callback_event(handle.callback_parent)  # and its callback events


def _drop(handle: SpanHandle, error: BaseException) -> None:
    handle.site.dispatcher.event(SpanDropEvent(span_id=handle.id, err_str=str(error)))
    handle.site.dispatcher.span_drop(id_=handle.id, bound_args=handle.bound, instance=handle.site.instance, err=error)


class Span(RegionObserver, abc.ABC):
    """A span reported through LlamaIndex's dispatcher, with the events ``start_events(inputs, {})``
    right after it opens and ``end_events(inputs, outputs)`` before it closes with ``result(outputs)``;
    ``call(inputs)`` gives the arguments it binds; ``callback`` the legacy callback event the method
    starts (after its events). ``mode``: reported only in a ``query`` ("sync") or
    an ``aquery`` ("async") where the framework's sync and async paths differ (None: in both); a span
    not reported passes its children to its own parent. ``when(inputs)``: whether the framework
    opens it for these values (None: always). ``progress(inputs, text, delta)``: the events each
    delta of its streamed output ``text`` brings. ``read_where``: the input that says where the reader
    of a streamed answer started reading it (a ``ReadingPlace``): the span goes there, outside the
    query's (the LLM call a streamed response makes natively as it is read)."""

    def __init__(self, call: Call, start_events: Events | None = None, end_events: Events | None = None,
                 result: Callable[[Mapping[str, Any]], Any] | None = None, mode: str | None = None,
                 when: Callable[[Mapping[str, Any]], bool] | None = None, callback: CallbackEvent | None = None,
                 progress: Progress | None = None, read_where: str | None = None) -> None:
        self.call, self.start_events, self.end_events, self.result = call, start_events, end_events, result
        self.mode, self.when, self.callback = mode, when, callback
        self.progress, self.read_where = progress, read_where
        self._streamed: dict[str, str] = {}  # the text each open span's stream has brought so far

    def active(self, query: Mapping[str, Any]) -> bool:
        spans = query.get("spans")
        return isinstance(spans, QuerySpans) and (self.mode is None or spans.is_async == (self.mode == "async"))

    def applies(self, inputs: Mapping[str, Any]) -> bool:
        return self.when is None or self.when(inputs)

    @abc.abstractmethod
    def site(self, spans: QuerySpans) -> SpanSite:
        """Where this query's span is reported from."""

    def site_of(self, spans: QuerySpans, inputs: Mapping[str, Any]) -> SpanSite:
        """``site``, for the region's input values ``inputs``."""
        return self.site(spans)

    def start(self, parent: SpanHandle | None, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> SpanHandle:
        spans: QuerySpans = query["spans"]
        args, kwargs = self.call(inputs)
        if self.read_where is not None:
            place: ReadingPlace = inputs[self.read_where]
            parent_id, callback_parent, tags = place.span, place.callback_parent, place.tags
        else:
            parent_id = parent.id if parent else spans.parent
            callback_parent = parent.callback_parent if parent else spans.callback_parent
            tags = spans.tags
        handle = _open(self.site_of(spans, inputs), args, kwargs, parent_id, inputs, tags, callback_parent)
        if self.start_events:
            _emit(handle, self.start_events(inputs, {}))
        if self.callback is not None and self.callback.manager.handlers:
            event = self.callback.open(callback_parent, inputs)
            if event is not None:
                leaf = self.callback.type in LEAF_EVENTS
                handle = replace(handle, callback_id=event, callback_parent=callback_parent if leaf else event)
        return handle

    def delta(self, handle: SpanHandle, key: str, piece: str) -> None:
        if self.progress is not None:
            text = self._streamed[handle.id] = self._streamed.get(handle.id, "") + piece
            _emit(handle, self.progress(handle.inputs, text, piece))

    def end(self, handle: SpanHandle, outputs: Mapping[str, Any]) -> None:
        self._streamed.pop(handle.id, None)
        if self.end_events:
            _emit(handle, self.end_events(handle.inputs, outputs))
        if handle.callback_id is not None:
            self.callback.close(handle.callback_id, handle.inputs, outputs)
        _exit(handle, self.result(outputs) if self.result else None)

    def fail(self, handle: SpanHandle, error: BaseException) -> None:
        self._streamed.pop(handle.id, None)
        if handle.callback_id is not None:
            self.callback.fail(handle.callback_id, error)
        _drop(handle, error)

    def enter(self, handle: SpanHandle) -> None:
        _enter(handle)


class MethodSpan(Span):
    """The span of ``instance.method``, or of its async twin: in an ``aquery`` (``asynchronous`` None),
    always (True: a component that runs its parts asynchronously inside a sync call) or never (False:
    one that calls them synchronously inside an async one); see ``Span``. With ``instance_input``, the
    instance is the region's input of that name, one per query, of ``instance``'s class (a chat
    turn's synthesizer)."""

    def __init__(self, instance: Any, method: str, call: Call, start_events: Events | None = None,
                 end_events: Events | None = None, result: Callable[[Mapping[str, Any]], Any] | None = None,
                 mode: str | None = None, asynchronous: bool | None = None,
                 when: Callable[[Mapping[str, Any]], bool] | None = None, callback: CallbackEvent | None = None,
                 instance_input: str | None = None, progress: Progress | None = None,
                 read_where: str | None = None) -> None:
        super().__init__(call, start_events, end_events, result, mode, when, callback, progress, read_where)
        self.instance, self.method, self.asynchronous = instance, method, asynchronous
        self.instance_input = instance_input
        self._sites: dict[bool, SpanSite] = {}

    def site_of(self, spans: QuerySpans, inputs: Mapping[str, Any]) -> SpanSite:
        site = self.site(spans)
        return site if self.instance_input is None else replace(site, instance=inputs[self.instance_input])

    def site(self, spans: QuerySpans) -> SpanSite:
        is_async = spans.is_async if self.asynchronous is None else self.asynchronous
        if is_async not in self._sites:  # read once: a signature per span per query would be work on every query
            self._sites[is_async] = method_site(self.instance, async_name(self.method) if is_async else self.method)
        return self._sites[is_async]


class FunctionSpan(Span):
    """The span of a function at ``site`` (LlamaIndex's ``run_jobs`` and its workers); see ``Span``."""

    def __init__(self, site: SpanSite, call: Call, result: Callable[[Mapping[str, Any]], Any] | None = None,
                 mode: str | None = None, when: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
        super().__init__(call, result=result, mode=mode, when=when)
        self._site = site

    def site(self, spans: QuerySpans) -> SpanSite:
        return self._site


class CallbackRegion(RegionObserver):
    """A legacy callback event a component opens itself around the work of its region, with no
    span of its own (CitationQueryEngine's RETRIEVE event around its retrieval): the spans inside go
    under the enclosing span, the callback events under this one."""

    def __init__(self, callback: CallbackEvent) -> None:
        self.callback = callback

    def active(self, query: Mapping[str, Any]) -> bool:
        return isinstance(query.get("spans"), QuerySpans)

    def start(self, parent: SpanHandle | None, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> SpanHandle:
        if parent is None:
            raise ValueError("a callback region goes inside a span")
        if not self.callback.manager.handlers:
            return parent
        event = self.callback.open(parent.callback_parent, inputs)
        return replace(parent, inputs=inputs, callback_id=event, callback_parent=event)

    def end(self, handle: SpanHandle, outputs: Mapping[str, Any]) -> None:
        if self.callback.manager.handlers:
            self.callback.close(handle.callback_id, handle.inputs, outputs)

    def fail(self, handle: SpanHandle, error: BaseException) -> None:
        if self.callback.manager.handlers:
            self.callback.fail(handle.callback_id, error)

    def enter(self, handle: SpanHandle) -> None:
        _enter(handle)


def citation_retrieve_region(reading: "AppReading", engine: Any, nodes: Ref) -> str:
    """The RETRIEVE callback event a CitationQueryEngine opens around its retrieval and citation
    chunking (``nodes``: the chunks), inside its ``_query``."""
    return reading.span(CallbackRegion(CallbackEvent(CBEventType.RETRIEVE, engine.callback_manager,
                                                     lambda v: {EventPayload.QUERY_STR: v["query"]},
                                                     lambda v, o: {EventPayload.NODES: o["nodes"]})),
                        {"query": reading.query}, {"nodes": nodes})


def sub_question_region(reading: "AppReading", engine: Any, sub_question: Ref, pair: Ref, error: Ref) -> str:
    """The SUB_QUESTION callback event a SubQuestionQueryEngine opens around one sub-question's answer
    (``pair``; ``error``: what failed it, where something did), inside its ``_query``."""
    return reading.span(CallbackRegion(CallbackEvent(
        CBEventType.SUB_QUESTION, engine.callback_manager,
        lambda v: {EventPayload.SUB_QUESTION: SubQuestionAnswerPair(sub_q=v["sub_question"])},
        lambda v, o: {EventPayload.EXCEPTION: o["error"]} if o["error"] is not None
        else {EventPayload.SUB_QUESTION: o["pair"]})), {"sub_question": sub_question}, {"pair": pair, "error": error})


class ItemSpan(RegionObserver):
    """``span`` on one item of a batched module: its inputs and outputs are one-item slices of the
    batch's lists (the k-th generated query, its nodes); nothing is reported when that item did not
    come (the LLM wrote fewer queries)."""

    def __init__(self, span: RegionObserver) -> None:
        self.span = span

    def active(self, query: Mapping[str, Any]) -> bool:
        return self.span.active(query)

    def applies(self, inputs: Mapping[str, Any]) -> bool:
        return all(len(value) == 1 for value in inputs.values())

    def start(self, parent: Any, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> Any:
        return self.span.start(parent, {key: value[0] for key, value in inputs.items()}, query)

    def end(self, handle: Any, outputs: Mapping[str, Any]) -> None:
        self.span.end(handle, {key: value[0] for key, value in outputs.items()})

    def fail(self, handle: Any, error: BaseException) -> None:
        self.span.fail(handle, error)

    def enter(self, handle: Any) -> None:
        self.span.enter(handle)


@dataclass
class QuerySpan:
    """The open span of one query (``context`` is what its plan's regions go under; None: nobody
    listens); ``result`` is set to the response before it closes."""

    context: QuerySpans | None
    result: Any = None


@contextmanager
def query_span(engine: Any, str_or_query_bundle: Any, method: str = "query") -> Iterator[QuerySpan]:
    """The span ``engine.query`` (or ``aquery``) opens, with its query events, around a query Teola
    runs for it; nothing when nobody listens."""
    bundle = QueryBundle(str_or_query_bundle) if isinstance(str_or_query_bundle, str) else str_or_query_bundle
    with entry_span(engine, method, method == "aquery", (str_or_query_bundle,), {},
                    [QueryStartEvent(query=str_or_query_bundle)],
                    lambda result: [QueryEndEvent(query=bundle, response=result)]) as span:
        yield span


@contextmanager
def entry_span(engine: Any, method: str, asynchronous: bool, args: tuple, kwargs: dict,
               start_events: Sequence[BaseEvent] = (),
               end_events: Callable[[Any], Sequence[BaseEvent]] = lambda result: ()) -> Iterator[QuerySpan]:
    """The span a user's call ``engine.method(*args, **kwargs)`` opens (``query``, ``chat``, their async
    twins: ``asynchronous``), with its events, around the work Teola runs for it (whose regions go
    under it); nothing when nobody listens."""
    if not listening(engine):
        yield QuerySpan(None)
        return
    tags = active_instrument_tags.get()
    handle = _open(method_site(engine, method), args, kwargs, active_span_id.get(), {}, tags)
    token = active_span_id.set(handle.id)
    span = QuerySpan(QuerySpans(handle.id, is_async=asynchronous, tags=tags, callback_parent=li.callback_parent()))
    try:
        _emit(handle, start_events)
        yield span
    except BaseException as error:
        _drop(handle, error)
        raise
    else:
        _emit(handle, end_events(span.result))
        _exit(handle, span.result)
    finally:
        active_span_id.reset(token)


def _bundle(values: Mapping[str, Any]) -> QueryBundle:
    """The query bundle of a region's values: the query, with ``texts`` as its embedding strings where
    the values have them (a transform's bundle)."""
    return QueryBundle(values["query"], custom_embedding_strs=values.get("texts"))


def _payload(component: Any) -> dict[str, Any]:
    """What a model's instrumented methods report of it (``model_dict``), its API key left out."""
    payload = component.to_payload() if hasattr(component, "to_payload") else component.to_dict()
    payload.pop("api_key", None)
    return payload


def retriever_spans(reading: "AppReading", retriever: Any, embed_model: Any, module: str, query: Source,
                    item: int | None = None, asynchronous: bool | None = None,
                    embedding_texts: tuple[Ref, int] | None = None) -> None:
    """``retriever.retrieve`` > ``_retrieve`` > ``embed_model.get_query_embedding`` > its
    ``_get_query_embedding``, with the retrieval and embedding events, for the retrieve module ``module``
    (with ``item``: for the item-th query of a batched one, whose ``query`` is a list); their async
    twins as ``MethodSpan``'s ``asynchronous`` says. With ``embedding_texts`` (a list of texts and how
    many it may hold), the query bundle embeds those texts, one embedding span each (HyDE's)."""

    def one(source: Source) -> Source:
        return source if item is None else Ref(source.node, source.output, (item, item + 1))

    def span(instance: Any, method: str, call: Call, start: Events | None = None, end: Events | None = None,
             result: Callable[[Mapping[str, Any]], Any] | None = None, each: bool = item is not None,
             mode: str | None = None, callback: CallbackEvent | None = None) -> RegionObserver:
        observer = MethodSpan(instance, method, call, start, end, result, mode, asynchronous, callback=callback)
        return ItemSpan(observer) if each else observer

    inputs: dict[str, Source] = {"query": one(query)}
    if embedding_texts is not None:
        inputs["texts"] = embedding_texts[0]
    inner = _retrieve_spans(reading, retriever, inputs, one(Ref(module, "nodes")), span)
    embedded = [({"query": one(query)}, one(Ref(module, "vector")), item is not None)] if embedding_texts is None else [
        ({"query": Ref(embedding_texts[0].node, embedding_texts[0].output, (k, k + 1))}, Ref(module, "vector", (k, k + 1)),
         True) for k in range(embedding_texts[1])]
    for texts, vector, each in embedded:
        with reading.inside(inner):
            embedding = reading.span(span(
                embed_model, "get_query_embedding", lambda v: ((v["query"],), {}),
                lambda v, o: [EmbeddingStartEvent(model_dict=_payload(embed_model))],
                lambda v, o: [EmbeddingEndEvent(chunks=[v["query"]], embeddings=[_floats(o["vector"])])],
                lambda o: _floats(o["vector"]), each=each, callback=CallbackEvent(
                    CBEventType.EMBEDDING, embed_model.callback_manager,
                    lambda v: {EventPayload.SERIALIZED: _payload(embed_model)},
                    lambda v, o: {EventPayload.CHUNKS: [v["query"]], EventPayload.EMBEDDINGS: [_floats(o["vector"])]})),
                texts, {"vector": vector})
        with reading.inside(embedding):
            reading.span(span(embed_model, "_get_query_embedding", lambda v: ((v["query"],), {}),
                              result=lambda o: _floats(o["vector"]), each=each), texts, {"vector": vector})


def _floats(vector: Any) -> list[float]:
    return [float(x) for x in vector]


@dataclass(frozen=True)
class Answer:
    """Where a region finds its LLM call's raw answer: the output ``text``, or with ``item`` the
    item-th answer of that list (one call of a batch, made only when the inputs' ``prompt`` list
    has that item)."""

    text: Ref
    item: int | None = None

    def of(self, outputs: Mapping[str, Any]) -> str:
        """The raw answer among a region's outputs."""
        return outputs["text"] if self.item is None else outputs["text"][self.item]

    def made(self) -> Callable[[Mapping[str, Any]], bool] | None:
        """Whether the call was made, from the region's inputs (None: always)."""
        item = self.item
        return None if item is None else (lambda v: item < len(v["prompt"]))


def llm_call_spans(reading: "AppReading", llm: Any, predict: Callable[[Mapping[str, Any]], tuple[Any, dict]],
                   inputs: Mapping[str, Source], text: Ref, asynchronous: bool | None = None,
                   item: int | None = None) -> None:
    """``llm.predict(template, **args)`` > ``chat(messages)`` or ``complete(prompt, formatted=True)``
    with their events; ``predict(inputs)`` gives the template and its arguments, ``text`` is the raw
    answer (with ``item``: see ``Answer``); ``asynchronous`` as ``MethodSpan``'s."""
    answer = Answer(text, item)

    def parsed(o: Mapping[str, Any]) -> str:
        return li.parse_output(llm, answer.of(o))

    span = reading.span(MethodSpan(
        llm, "predict", lambda v: ((predict(v)[0],), predict(v)[1]),
        lambda v, o: [LLMPredictStartEvent(template=predict(v)[0], template_args=predict(v)[1])],
        lambda v, o: [LLMPredictEndEvent(output=parsed(o))], parsed, asynchronous=asynchronous, when=answer.made(),
        callback=_templating(llm, predict)), inputs, {"text": text})
    with reading.inside(span):
        _model_spans(reading, llm, predict, inputs, answer, asynchronous)


def llm_stream_spans(reading: "AppReading", llm: Any, predict: Callable[[Mapping[str, Any]], tuple[Any, dict]],
                     inputs: Mapping[str, Source], text: Ref, when: Callable[[Mapping[str, Any]], bool],
                     read_where: Source | None = None) -> None:
    """``llm.stream(template, **args)`` > ``stream_chat(messages)`` or ``stream_complete(prompt,
    formatted=True)`` (their async twins in an ``aquery``) with their events, one in-progress event
    per delta of ``text`` (a streamed decode's); ``predict(inputs)`` gives the template and its
    arguments; ``when(inputs)``: whether the call is made so. ``read_where``: where a streaming
    synthesizer's last call goes, which its response makes as its reader reads it (a ``ReadingPlace``:
    outside the query, where reading began)."""
    span = reading.span(MethodSpan(
        llm, "stream", lambda v: ((predict(v)[0],), predict(v)[1]),
        lambda v, o: [LLMPredictStartEvent(template=predict(v)[0], template_args=predict(v)[1])],
        when=when, callback=_templating(llm, predict), read_where=None if read_where is None else "read_where"),
        inputs if read_where is None else {**inputs, "read_where": read_where}, {"text": text})
    with reading.inside(span):
        _model_spans(reading, llm, predict, inputs, Answer(text), None, when)


def _templating(llm: Any, predict: Callable[[Mapping[str, Any]], tuple[Any, dict]]) -> CallbackEvent:
    """The ``TEMPLATING`` callback event ``predict``/``stream`` start with the template and its arguments."""

    def payload(v: Mapping[str, Any]) -> dict:
        template, args = predict(v)[:2]
        return {EventPayload.TEMPLATE: template.get_template(llm=llm),
                EventPayload.TEMPLATE_VARS: {k: x for k, x in ChainMap(template.kwargs, args).items()
                                             if k in template.template_vars},
                EventPayload.SYSTEM_PROMPT: llm.system_prompt, EventPayload.QUERY_WRAPPER_PROMPT: llm.query_wrapper_prompt}

    return CallbackEvent(CBEventType.TEMPLATING, llm.callback_manager, payload)


def _model_spans(reading: "AppReading", llm: Any, predict: Callable[[Mapping[str, Any]], tuple[Any, dict]],
                 inputs: Mapping[str, Source], answer: Answer, asynchronous: bool | None,
                 streamed_when: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
    """The chat or completion call ``predict`` (``stream``, where ``streamed_when`` is given) makes,
    by the kind of model ``llm`` is."""

    def rendered(v: Mapping[str, Any]) -> tuple[list[Any] | None, str | None]:
        template, args = predict(v)[:2]
        return li.render(llm, template, **args)

    if llm.metadata.is_chat_model:
        _chat_spans(reading, llm, lambda v: rendered(v)[0], inputs, answer, asynchronous, streamed_when)
    else:
        _complete_spans(reading, llm, lambda v: rendered(v)[1], {"formatted": True}, inputs, answer, asynchronous,
                        streamed_when)


def completion_spans(reading: "AppReading", llm: Any, prompt: Callable[[Mapping[str, Any]], str],
                     inputs: Mapping[str, Source], text: Ref) -> None:
    """``llm.complete(prompt(inputs))`` with its events (a chat model's too: its ``complete`` reports
    completion events); ``text`` is the raw answer."""
    _complete_spans(reading, llm, prompt, {}, inputs, Answer(text))


def chat_spans(reading: "AppReading", llm: Any, messages: Callable[[Mapping[str, Any]], list[Any]],
               inputs: Mapping[str, Source], text: Ref, streamed: bool = False) -> None:
    """``llm.chat(messages(inputs))`` with its events (``streamed``: ``stream_chat``, one in-progress
    event per delta of ``text``, a streamed decode's); ``text`` is the answer."""
    _chat_spans(reading, llm, messages, inputs, Answer(text), streamed_when=(lambda v: True) if streamed else None)


def _chat_spans(reading: "AppReading", llm: Any, messages: Callable[[Mapping[str, Any]], list[Any]],
                inputs: Mapping[str, Source], answer: Answer, asynchronous: bool | None = None,
                streamed_when: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
    """``chat`` (``stream_chat`` where ``streamed_when`` is given: made when it holds) with its events."""
    result = lambda o: _chat_response(answer.of(o))  # noqa: E731
    callback = CallbackEvent(CBEventType.LLM, llm.callback_manager,
                             lambda v: {EventPayload.MESSAGES: messages(v), EventPayload.ADDITIONAL_KWARGS: {},
                                        EventPayload.SERIALIZED: _payload(llm)},
                             lambda v, o: {EventPayload.MESSAGES: messages(v), EventPayload.RESPONSE: result(o)})
    progress = lambda v, text, delta: [LLMChatInProgressEvent(  # noqa: E731
        messages=messages(v), response=ChatResponse(message=LIChatMessage(role=MessageRole.ASSISTANT, content=text),
                                                    delta=delta))]
    _method_spans(reading, llm, "stream_chat" if streamed_when else "chat", lambda v: ((messages(v),), {}),
                  lambda v, o: [LLMChatStartEvent(model_dict=_payload(llm), messages=messages(v), additional_kwargs={})],
                  lambda v, o: [LLMChatEndEvent(messages=messages(v), response=result(o))], result, inputs, answer,
                  asynchronous, callback, streamed_when, progress)


def _complete_spans(reading: "AppReading", llm: Any, prompt: Callable[[Mapping[str, Any]], str], kwargs: dict,
                    inputs: Mapping[str, Source], answer: Answer, asynchronous: bool | None = None,
                    streamed_when: Callable[[Mapping[str, Any]], bool] | None = None) -> None:
    """``complete`` (``stream_complete`` where ``streamed_when`` is given: made when it holds) with its events."""
    result = lambda o: CompletionResponse(text=answer.of(o))  # noqa: E731
    callback = CallbackEvent(CBEventType.LLM, llm.callback_manager,
                             lambda v: {EventPayload.PROMPT: prompt(v), EventPayload.ADDITIONAL_KWARGS: kwargs,
                                        EventPayload.SERIALIZED: _payload(llm)},
                             lambda v, o: {EventPayload.PROMPT: prompt(v), EventPayload.COMPLETION: result(o)})
    progress = lambda v, text, delta: [LLMCompletionInProgressEvent(  # noqa: E731
        prompt=prompt(v), response=CompletionResponse(text=text, delta=delta))]
    _method_spans(reading, llm, "stream_complete" if streamed_when else "complete", lambda v: ((prompt(v),), kwargs),
                  lambda v, o: [LLMCompletionStartEvent(model_dict=_payload(llm), prompt=prompt(v),
                                                        additional_kwargs=kwargs)],
                  lambda v, o: [LLMCompletionEndEvent(prompt=prompt(v), response=result(o))], result, inputs, answer,
                  asynchronous, callback, streamed_when, progress)


def _method_spans(reading: "AppReading", llm: Any, method: str, call: Call, start: Events, end: Events,
                  result: Callable[[Mapping[str, Any]], Any], inputs: Mapping[str, Source], answer: Answer,
                  asynchronous: bool | None, callback: CallbackEvent,
                  streamed_when: Callable[[Mapping[str, Any]], bool] | None = None,
                  progress: Progress | None = None) -> None:
    """``llm.method``'s span with its events, inside the spans of the overrides a call passes through
    first; a streamed call (``streamed_when``: made when it holds) reports ``progress`` on each delta."""
    outer = reading.region
    when = streamed_when or answer.made()
    for _ in range(_delegations(llm, method)):  # an override's own span around the method it delegates to
        with reading.inside(outer):
            outer = reading.span(MethodSpan(llm, method, call, result=result, asynchronous=asynchronous,
                                            when=when), inputs, {"text": answer.text})
    with reading.inside(outer):
        reading.span(MethodSpan(llm, method, call, start, end, result, asynchronous=asynchronous, when=when,
                                callback=callback, progress=progress if streamed_when else None),
                     inputs, {"text": answer.text})


def _delegations(llm: Any, method: str) -> int:
    """How many instrumented overrides of ``method`` a call passes through before the one that
    reports its events: LlamaIndex's OpenAI client subclasses (``OpenAILike`` ...) override ``chat``
    and ``complete`` and call the ``OpenAI`` client's, each a span of its own."""
    openai = sys.modules.get("llama_index.llms.openai.base")
    if openai is None or not isinstance(llm, openai.OpenAI) or type(llm) is openai.OpenAI:
        return 0
    return int(method in type(llm).__dict__)


def _chat_response(text: str) -> ChatResponse:
    return ChatResponse(message=LIChatMessage(role=MessageRole.ASSISTANT, content=text))


def _synthesize_spans(reading: "AppReading", synth: Any, module: str, query: Source, nodes: Source,
                      outputs: Mapping[str, Source], result: Callable[[Mapping[str, Any]], Any],
                      prompt: Source | None = None, events: bool = False, turn: Source | None = None) -> str:
    """``synth.synthesize`` > ``get_response`` over the nodes' texts (ending with ``outputs``, returning
    ``result``; with ``events``, its get-response events), for the synthesize module ``module``,
    reported where the module has a prompt (its own, or ``prompt``: with none, the native
    synthesizer runs and reports itself under the parent span); returns the ``get_response`` region.
    ``turn``: where each query's own synthesizer comes from, where it has one (a chat turn's; ``synth``
    is then one of its kind)."""
    texts = lambda v: [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in v["nodes"]]  # noqa: E731
    inputs = {"query": query, "nodes": nodes, "prompt": prompt or Ref(module, "prompt"), **_turn(turn)}
    synthesize = reading.span(MethodSpan(
        synth, "synthesize", lambda v: ((), {"query": _bundle(v), "nodes": v["nodes"]}),
        lambda v, o: [SynthesizeStartEvent(query=_bundle(v))],
        lambda v, o: [SynthesizeEndEvent(query=_bundle(v), response=o["response"])],
        lambda o: o["response"], callback=CallbackEvent(CBEventType.SYNTHESIZE, li.synthesizer_callbacks(synth),
                                                        lambda v: {EventPayload.QUERY_STR: v["query"]},
                                                        lambda v, o: {EventPayload.RESPONSE: o["response"]}),
        instance_input=_instance(turn)), inputs, {"response": Ref(module, "response")})
    start = (lambda v, o: [GetResponseStartEvent(query_str=v["query"], text_chunks=texts(v))]) if events else None
    with reading.inside(synthesize):
        return reading.span(MethodSpan(synth, "get_response",
                                       lambda v: ((), {"query_str": v["query"], "text_chunks": texts(v)}),
                                       start, (lambda v, o: [GetResponseEndEvent()]) if events else None,
                                       result=result, instance_input=_instance(turn)), inputs, outputs)


def _turn(turn: Source | None) -> dict[str, Source]:
    """The region inputs that carry a query's own synthesizer (none: the one read)."""
    return {} if turn is None else {"synth": turn}


def _instance(turn: Source | None) -> str | None:
    return None if turn is None else "synth"


def refine_spans(reading: "AppReading", synth: Any, query: Source, nodes: Source, steps: Sequence[str],
                 call: Callable[[Mapping[str, Any], int], Any],
                 packed: Callable[[Mapping[str, Any]], list[str]] | None = None, turn: Source | None = None,
                 read_where: Source | None = None) -> str:
    """``synth.synthesize`` > ``get_response`` (compact mode: > its refine ``get_response`` on the
    ``packed(values)`` chunks) > the LLM's spans of each refine step made, ``call(values, i)``
    giving step ``i``'s ``LLMCall`` from its inputs (the answers before it: ``answer<j>``; where the
    synthesizer streams, its calls stream, the last one where ``read_where`` says its reader read it),
    for the refine steps ``steps`` finished by the module ``synthesize``. Returns the span the
    loop's calls after the steps (run natively) go under; none are reported where the first step
    has no prompt (the native synthesizer runs and reports itself). ``turn``: see ``_synthesize_spans``."""
    response = {"response": Ref("synthesize", "response")}
    text = lambda o: getattr(o["response"], "response_gen", None) or o["response"].response  # noqa: E731
    first = Ref(steps[0], "prompt")
    outer = _synthesize_spans(reading, synth, "synthesize", query, nodes, response, text, first, events=packed is None,
                              turn=turn)
    if packed is not None:
        inputs = {"query": query, "nodes": nodes, "prompt": first, **_turn(turn)}
        with reading.inside(outer):
            outer = reading.span(MethodSpan(
                synth, "get_response",
                lambda v: ((), {"query_str": v["query"], "text_chunks": packed(v), "prev_response": None}),
                lambda v, o: [GetResponseStartEvent(query_str=v["query"], text_chunks=packed(v))],
                lambda v, o: [GetResponseEndEvent()], text, instance_input=_instance(turn)), inputs, response)
    llm = li.synthesizer_parts(synth).llm
    for i, step in enumerate(steps):
        inputs = {"query": query, "nodes": nodes, "prompt": Ref(step, "prompt"), **_turn(turn),
                  **{f"answer{j}": Ref(steps[j], "text") for j in range(i)}}
        step_call = lambda v, i=i: call(v, i)  # noqa: E731
        if read_where is None:
            with reading.inside(outer):
                llm_call_spans(reading, llm, step_call, inputs, Ref(step, "text"))
            continue
        with reading.inside(outer):  # a call the loop reads before its next one
            llm_stream_spans(reading, llm, step_call, inputs, Ref(step, "text"), lambda v, i=i: not call(v, i).last)
        with reading.inside(None):  # the last, which the response makes where its reader reads it
            llm_stream_spans(reading, llm, step_call, inputs, Ref(step, "text"), lambda v, i=i: call(v, i).last,
                             read_where=read_where)
    return outer


# the first-level calls of a tree a trace shows (a query making more reports the first ones only)
MOST_TREE_CALLS = 16


def tree_spans(reading: "AppReading", synth: Any, module: str, query: Source, nodes: Source,
               chunks: Callable[[str, list], list[str]], template: Callable[[str], Any],
               extra_args: Mapping[str, Any] | None = None) -> str:
    """``synth.synthesize`` > ``get_response`` > the LLM's spans of each first-level call on
    ``template(query)`` with its chunk (``chunks(query, nodes)``) as ``context_str`` (and
    ``extra_args``, where the synthesizer passes more), for the tree_summarize (or accumulate) module
    ``module`` (whose ``text`` is the list of the calls' answers); returns the ``get_response`` span,
    which the native levels above go under (when nothing is reported, the span above it)."""
    inputs = {"query": query, "nodes": nodes, "prompt": Ref(module, "prompt")}
    outer = _synthesize_spans(reading, synth, module, query, nodes, {"response": Ref(module, "response")},
                              lambda o: o["response"].response)
    for k in range(MOST_TREE_CALLS):
        with reading.inside(outer):
            llm_call_spans(reading, li.synthesizer_parts(synth).llm,
                           lambda v, k=k: (template(v["query"]),
                                           {"context_str": chunks(v["query"], v["nodes"])[k], **(extra_args or {})}),
                           inputs, Ref(module, "text"), item=k)
    return outer


def simple_spans(reading: "AppReading", synth: Any, module: str, query: Source, nodes: Source,
                 args: Callable[[str, list], dict], template: Callable[[str], Any]) -> str:
    """``synth.synthesize`` > ``get_response`` > the LLM's spans of its one call on ``template(query)``
    with ``args(query, nodes)``, for a synthesize module ``module`` that never hands work back to the
    native synthesizer (simple_summarize); returns the ``get_response`` region."""
    parsed = lambda o: li.parse_output(li.synthesizer_parts(synth).llm, o["text"]) or "Empty Response"  # noqa: E731
    inputs = {"query": query, "nodes": nodes, "prompt": Ref(module, "prompt")}
    outer = _synthesize_spans(reading, synth, module, query, nodes, {"text": Ref(module, "text")}, parsed)
    with reading.inside(outer):
        llm_call_spans(reading, li.synthesizer_parts(synth).llm, lambda v: (template(v["query"]), args(v["query"], v["nodes"])),
                       inputs, Ref(module, "text"))
    return outer


def _retrieve_spans(reading: "AppReading", retriever: Any, inputs: Mapping[str, Source], nodes: Source,
                    span: Callable[..., RegionObserver], inner_mode: str | None = None) -> str:
    """``retriever.retrieve`` (with the retrieval events) > ``_retrieve``, each made by ``span`` (the
    arguments of ``MethodSpan``), ``_retrieve`` reported in ``inner_mode`` queries only; returns its region."""

    retrieve = reading.span(span(
        retriever, "retrieve", lambda v: ((_bundle(v),), {}),
        lambda v, o: [RetrievalStartEvent(str_or_query_bundle=_bundle(v))],
        lambda v, o: [RetrievalEndEvent(str_or_query_bundle=_bundle(v), nodes=o["nodes"])],
        lambda o: o["nodes"], callback=CallbackEvent(CBEventType.RETRIEVE, retriever.callback_manager,
                                                     lambda v: {EventPayload.QUERY_STR: v["query"]},
                                                     lambda v, o: {EventPayload.NODES: o["nodes"]})),
        inputs, {"nodes": nodes})
    with reading.inside(retrieve):
        return reading.span(span(retriever, "_retrieve", lambda v: ((_bundle(v),), {}), result=lambda o: o["nodes"],
                                 mode=inner_mode), inputs, {"nodes": nodes})


def fusion_spans(reading: "AppReading", retriever: Any, module: str) -> str:
    """``retriever.retrieve`` > ``_retrieve`` of the fusion module ``module`` (``aretrieve`` alone in
    an ``aquery``: LlamaIndex reports no ``_aretrieve`` there); returns the span its query generation
    and sub-retrievals go under."""
    return _retrieve_spans(reading, retriever, {"query": reading.query}, Ref(module, "nodes"), MethodSpan,
                           inner_mode="sync")


def rerank_spans(reading: "AppReading", rerank: Any, module: str, nodes: Ref, batches: Sequence[tuple[str, Ref]]) -> None:
    """LLMRerank's spans for the postprocess module ``module``: in a ``query``, ``_postprocess_nodes``
    > one LLM ``predict`` per batch of candidates; in an ``aquery``, ``run_jobs`` > a worker per batch
    > ``apredict``. ``batches``: each batch's generate module and its slice of ``nodes``."""
    query = reading.query
    llm = rerank.llm
    post = reading.span(MethodSpan(rerank, "_postprocess_nodes",
                                   lambda v: ((), {"nodes": v["nodes"], "query_bundle": _bundle(v)}),
                                   result=lambda o: o["nodes"], mode="sync"),
                        {"query": query, "nodes": nodes}, {"nodes": Ref(module, "nodes")})
    answers = {f"answer{b}": Ref(batch, "text") for b, (batch, _) in enumerate(batches)}

    def parsed_answers(o: Mapping[str, Any]) -> list[str]:
        return [li.parse_output(llm, text) for text in o.values() if text is not SKIPPED]

    worker, parameters = li.run_jobs_worker()
    worker_site = SpanSite(worker, inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                                      for p in parameters]), _function_dispatcher(run_jobs))
    with reading.inside(post):
        jobs = reading.span(FunctionSpan(SpanSite(run_jobs.__qualname__, inspect.signature(run_jobs),
                                                  _function_dispatcher(run_jobs)),
                                         lambda v: ((), {"jobs": [f"{type(llm).__name__}.apredict"
                                                                  for _ in li.rerank_batches(rerank, v["nodes"])]}),
                                         parsed_answers, mode="async", when=lambda v: bool(v["nodes"])),
                            {"query": query, "nodes": nodes}, answers)
    for batch, candidates in batches:
        inputs = {"query": query, "nodes": candidates, "prompt": Ref(batch, "prompt")}  # no prompt: no call
        with reading.inside(jobs):
            job = reading.span(FunctionSpan(worker_site, lambda v: ((f"{type(llm).__name__}.apredict",), {}),
                                            lambda o: li.parse_output(llm, o["text"]), mode="async"),
                               inputs, {"text": Ref(batch, "text")})
        with reading.inside(job):
            llm_call_spans(reading, llm, lambda v: (rerank.choice_select_prompt,
                                                    li.rerank_kwargs(rerank, [n.node for n in v["nodes"]], v["query"])),
                           inputs, Ref(batch, "text"))


def _function_dispatcher(function: Callable) -> Any:
    return get_dispatcher(function.__module__)


def hyde_spans(reading: "AppReading", transform: Any, llm: Any, prompt: Any, texts: Ref, text: Ref) -> None:
    """``transform._run`` > the LLM's ``predict`` of the hypothetical document (``text``, raw), both
    synchronous in an ``aquery`` too, as TransformQueryEngine runs its transform; ``texts``: the
    embedding texts of the query bundle ``_run`` returns."""
    inputs: dict[str, Source] = {"query": reading.query}
    run = reading.span(MethodSpan(transform, "_run", lambda v: ((_bundle(v),), {"metadata": {}}),
                                  result=_bundle,
                                  asynchronous=False), inputs, {"query": reading.query, "texts": texts})
    with reading.inside(run):
        llm_call_spans(reading, llm, lambda v: (prompt, {"context_str": v["query"]}), inputs, text, asynchronous=False)


def inner_engine_span(reading: "AppReading", engine: Any, response: Ref, texts: Ref | None = None) -> str:
    """``engine.query`` on the query bundle of ``reading.query`` (with ``texts``, the embedding texts a
    transform made), with its query events: the span of a query engine inside another."""
    inputs = {"query": reading.query} if texts is None else {"query": reading.query, "texts": texts}
    return reading.span(MethodSpan(engine, "query", lambda v: ((_bundle(v),), {}),
                                   lambda v, o: [QueryStartEvent(query=_bundle(v))],
                                   lambda v, o: [QueryEndEvent(query=_bundle(v), response=o["response"])],
                                   lambda o: o["response"]),
                        inputs, {"response": response})


def chooser_span(reading: "AppReading", component: Any, method: str, call_with: Callable[[QueryBundle], tuple[tuple, dict]],
                 result: Ref) -> str:
    """``component.method`` (its async twin in an ``aquery``) on the bundle of ``reading.query``, called
    with ``call_with(bundle)``: a selector's ``_select``, a question generator's ``generate``, the span its
    LLM call and parse go under; ``result`` is what it returns."""
    return reading.span(MethodSpan(component, method, lambda v: call_with(_bundle(v)), result=lambda o: o["result"]),
                        {"query": reading.query}, {"result": result})


_QUERY_EVENT_ENGINES = (RetrieverQueryEngine, SubQuestionQueryEngine, CitationQueryEngine, RouterQueryEngine)


def query_engine_span(reading: "AppReading", engine: Any, response: Ref) -> str:
    """``engine._query``, under the query's own span (``query_span``): the region its components' spans
    go under; the engines Teola lowers (``_QUERY_EVENT_ENGINES``) start the ``QUERY`` callback event there."""
    callback = CallbackEvent(CBEventType.QUERY, engine.callback_manager, lambda v: {EventPayload.QUERY_STR: v["query"]},
                             lambda v, o: {EventPayload.RESPONSE: o["response"]}) \
        if isinstance(engine, _QUERY_EVENT_ENGINES) else None
    return reading.span(MethodSpan(engine, "_query", lambda v: ((_bundle(v),), {}), result=lambda o: o["response"],
                                   callback=callback), {"query": reading.query}, {"response": response})
