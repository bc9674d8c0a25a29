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
``query_span`` around the whole query, named after the wrapped engine.

Internal helper spans (``TokenTextSplitter.split_text`` while packing the context,
``DefaultRefineProgram.__call__`` around the LLM call) are not reproduced: the LLM call's spans go
straight under ``get_response``.
"""

from __future__ import annotations

import inspect
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from llama_index.core.base.llms.types import ChatMessage as LIChatMessage
from llama_index.core.base.llms.types import ChatResponse, CompletionResponse, MessageRole
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import DISPATCHER_SPAN_DECORATED_ATTR
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent
from llama_index.core.instrumentation.events.llm import (LLMChatEndEvent, LLMChatStartEvent, LLMCompletionEndEvent,
                                                         LLMCompletionStartEvent, LLMPredictEndEvent,
                                                         LLMPredictStartEvent)
from llama_index.core.instrumentation.events.query import QueryEndEvent, QueryStartEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.instrumentation.events.synthesis import (GetResponseEndEvent, GetResponseStartEvent,
                                                               SynthesizeEndEvent, SynthesizeStartEvent)
from llama_index.core.instrumentation.events.span import SpanDropEvent
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import NullSpanHandler
from llama_index.core.schema import MetadataMode, QueryBundle

from teola.adapters.llama_index import compat as li
from teola.optimizer.ir import QueryInput, Ref, Source
from teola.optimizer.regions import RegionObserver

if TYPE_CHECKING:
    from teola.adapters.llama_index.reading import AppReading

Events = Callable[[Mapping[str, Any], Mapping[str, Any]], Sequence[BaseEvent]]
Call = Callable[[Mapping[str, Any]], tuple[tuple, dict]]


def reports_its_own_span(method: Callable) -> Callable:
    """Mark a method of a LlamaIndex subclass as reporting its span itself, so that LlamaIndex's
    ``DispatcherSpanMixin`` does not wrap it in a span named after the subclass."""
    setattr(method, DISPATCHER_SPAN_DECORATED_ATTR, True)
    return method


def listening() -> bool:
    """Whether any span or event handler other than LlamaIndex's null ones is attached anywhere."""
    root = get_dispatcher()
    dispatchers = [root, *root.manager.dispatchers.values()] if root.manager else [root]
    return any(d.event_handlers or any(not isinstance(h, NullSpanHandler) for h in d.span_handlers)
               for d in dispatchers)


@dataclass(frozen=True)
class QuerySpans:
    """One query's place in the span tree: the span its top-level spans go under, and whether it
    was asked with ``aquery`` (its components then report their async methods' spans)."""

    parent: str
    is_async: bool = False


def async_name(method: str) -> str:
    """The async twin of an instrumented method: ``retrieve`` -> ``aretrieve``, ``_query`` -> ``_aquery``."""
    return f"_a{method[1:]}" if method.startswith("_") else f"a{method}"


@dataclass(frozen=True)
class SpanHandle:
    """An open span: its id, the arguments it was opened with, the region's input values."""

    id: str
    bound: inspect.BoundArguments
    inputs: Mapping[str, Any]
    method: str


def _open(instance: Any, method: str, args: tuple, kwargs: dict, parent: str | None) -> SpanHandle:
    bound = inspect.signature(getattr(instance, method)).bind(*args, **kwargs)
    span = f"{type(instance).__name__}.{method}-{uuid.uuid4()}"
    _dispatcher(instance, method).span_enter(id_=span, bound_args=bound, instance=instance, parent_id=parent, tags={})
    return SpanHandle(span, bound, {}, method)


def _dispatcher(instance: Any, method: str) -> Any:
    """The dispatcher of the module that defines the method, as its ``@dispatcher.span`` uses."""
    return get_dispatcher(getattr(getattr(type(instance), method), "__module__", None) or "root")


def _emit(instance: Any, method: str, span: str, events: Sequence[BaseEvent]) -> None:
    dispatcher = _dispatcher(instance, method)
    for event in events:
        event.span_id = span
        dispatcher.event(event)


def _drop(instance: Any, method: str, handle: SpanHandle, error: BaseException) -> None:
    dispatcher = _dispatcher(instance, method)
    dispatcher.event(SpanDropEvent(span_id=handle.id, err_str=str(error)))
    dispatcher.span_drop(id_=handle.id, bound_args=handle.bound, instance=instance, err=error)


class MethodSpan(RegionObserver):
    """The span of ``instance.method`` called as ``call(inputs)`` says, with the events
    ``start_events(inputs, {})`` right after it opens and ``end_events(inputs, outputs)`` before it
    closes with ``result(outputs)``."""

    def __init__(self, instance: Any, method: str, call: Call, start_events: Events | None = None,
                 end_events: Events | None = None, result: Callable[[Mapping[str, Any]], Any] | None = None) -> None:
        self.instance, self.method, self.call = instance, method, call
        self.start_events, self.end_events, self.result = start_events, end_events, result

    def active(self, query: Mapping[str, Any]) -> bool:
        return isinstance(query.get("spans"), QuerySpans)

    def start(self, parent: SpanHandle | None, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> SpanHandle:
        spans: QuerySpans = query["spans"]
        method = async_name(self.method) if spans.is_async else self.method
        args, kwargs = self.call(inputs)
        handle = _open(self.instance, method, args, kwargs, parent.id if parent else spans.parent)
        if self.start_events:
            _emit(self.instance, method, handle.id, self.start_events(inputs, {}))
        return SpanHandle(handle.id, handle.bound, inputs, method)

    def end(self, handle: SpanHandle, outputs: Mapping[str, Any]) -> None:
        if self.end_events:
            _emit(self.instance, handle.method, handle.id, self.end_events(handle.inputs, outputs))
        result = self.result(outputs) if self.result else None
        _dispatcher(self.instance, handle.method).span_exit(id_=handle.id, bound_args=handle.bound,
                                                            instance=self.instance, result=result)

    def fail(self, handle: SpanHandle, error: BaseException) -> None:
        _drop(self.instance, handle.method, handle, error)


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
    if not listening():
        yield QuerySpan(None)
        return
    handle = _open(engine, method, (str_or_query_bundle,), {}, active_span_id.get())
    token = active_span_id.set(handle.id)
    query = QuerySpan(QuerySpans(handle.id, is_async=method == "aquery"))
    try:
        _emit(engine, method, handle.id, [QueryStartEvent(query=str_or_query_bundle)])
        yield query
    except BaseException as error:
        _drop(engine, method, handle, error)
        raise
    else:
        bundle = QueryBundle(str_or_query_bundle) if isinstance(str_or_query_bundle, str) else str_or_query_bundle
        _emit(engine, method, handle.id, [QueryEndEvent(query=bundle, response=query.result)])
        _dispatcher(engine, method).span_exit(id_=handle.id, bound_args=handle.bound, instance=engine,
                                              result=query.result)
    finally:
        active_span_id.reset(token)


def _bundle(values: Mapping[str, Any]) -> QueryBundle:
    return QueryBundle(values["query"])


def _payload(component: Any) -> dict[str, Any]:
    """What a model's instrumented methods report of it (``model_dict``), its API key left out."""
    payload = component.to_payload() if hasattr(component, "to_payload") else component.to_dict()
    payload.pop("api_key", None)
    return payload


def retriever_spans(reading: "AppReading", retriever: Any, embed_model: Any, module: str, query: Source) -> None:
    """``retriever.retrieve`` > ``_retrieve`` > ``embed_model.get_query_embedding`` > its
    ``_get_query_embedding``, with the retrieval and embedding events, for the retrieve module ``module``."""
    nodes, vector = Ref(module, "nodes"), Ref(module, "vector")
    inputs = {"query": query}
    retrieve = reading.span(MethodSpan(
        retriever, "retrieve", lambda v: ((_bundle(v),), {}),
        lambda v, o: [RetrievalStartEvent(str_or_query_bundle=_bundle(v))],
        lambda v, o: [RetrievalEndEvent(str_or_query_bundle=_bundle(v), nodes=o["nodes"])],
        lambda o: o["nodes"]), inputs, {"nodes": nodes})
    with reading.inside(retrieve):
        inner = reading.span(MethodSpan(retriever, "_retrieve", lambda v: ((_bundle(v),), {}), result=lambda o: o["nodes"]),
                             inputs, {"nodes": nodes})
    with reading.inside(inner):
        embedding = reading.span(MethodSpan(
            embed_model, "get_query_embedding", lambda v: ((v["query"],), {}),
            lambda v, o: [EmbeddingStartEvent(model_dict=_payload(embed_model))],
            lambda v, o: [EmbeddingEndEvent(chunks=[v["query"]], embeddings=[_floats(o["vector"])])],
            lambda o: _floats(o["vector"])), inputs, {"vector": vector})
    with reading.inside(embedding):
        reading.span(MethodSpan(embed_model, "_get_query_embedding", lambda v: ((v["query"],), {}),
                                result=lambda o: _floats(o["vector"])), inputs, {"vector": vector})


def _floats(vector: Any) -> list[float]:
    return [float(x) for x in vector]


def llm_call_spans(reading: "AppReading", llm: Any, predict: Callable[[Mapping[str, Any]], tuple[Any, dict]],
                   inputs: Mapping[str, Source], text: Ref) -> None:
    """``llm.predict(template, **args)`` > ``chat(messages)`` or ``complete(prompt, formatted=True)``
    with their events; ``predict(inputs)`` gives the template and its arguments, ``text`` is the raw answer."""

    def parsed(o: Mapping[str, Any]) -> str:
        return li.parse_output(llm, o["text"])

    span = reading.span(MethodSpan(
        llm, "predict", lambda v: ((predict(v)[0],), predict(v)[1]),
        lambda v, o: [LLMPredictStartEvent(template=predict(v)[0], template_args=predict(v)[1])],
        lambda v, o: [LLMPredictEndEvent(output=parsed(o))], parsed), inputs, {"text": text})

    def rendered(v: Mapping[str, Any]) -> tuple[list[Any] | None, str | None]:
        template, args = predict(v)
        return li.render(llm, template, **args)

    if llm.metadata.is_chat_model:
        method, call = "chat", lambda v: ((rendered(v)[0],), {})
        start = lambda v, o: [LLMChatStartEvent(model_dict=_payload(llm), messages=rendered(v)[0],  # noqa: E731
                                                additional_kwargs={})]
        end = lambda v, o: [LLMChatEndEvent(messages=rendered(v)[0], response=_chat_response(o["text"]))]  # noqa: E731
        result = lambda o: _chat_response(o["text"])  # noqa: E731
    else:
        method, call = "complete", lambda v: ((rendered(v)[1],), {"formatted": True})
        start = lambda v, o: [LLMCompletionStartEvent(model_dict=_payload(llm), prompt=rendered(v)[1],  # noqa: E731
                                                      additional_kwargs={"formatted": True})]
        end = lambda v, o: [LLMCompletionEndEvent(prompt=rendered(v)[1],  # noqa: E731
                                                  response=CompletionResponse(text=o["text"]))]
        result = lambda o: CompletionResponse(text=o["text"])  # noqa: E731
    for _ in range(_delegations(llm, method)):  # an override's own span around the method it delegates to
        with reading.inside(span):
            span = reading.span(MethodSpan(llm, method, call, result=result), inputs, {"text": text})
    with reading.inside(span):
        reading.span(MethodSpan(llm, method, call, start, end, result), inputs, {"text": text})


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


def synthesis_spans(reading: "AppReading", synth: Any, module: str, query: Source, nodes: Source,
                    chunks: Callable[[str, list], tuple[list[str], list[str]]], template: Callable[[str], Any]) -> None:
    """``synth.synthesize`` > ``get_response`` > its refine ``get_response`` on the packed chunks
    > the LLM's spans on ``template(query)`` with the one piece of them as ``context_str``, for the
    synthesize module ``module`` answered in one LLM call (``chunks(query, nodes)``: the packed
    chunks and the pieces the LLM calls get)."""
    texts = lambda v: [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in v["nodes"]]  # noqa: E731
    parsed = lambda o: li.parse_output(li.synthesizer_parts(synth).llm, o["text"])  # noqa: E731
    synthesize = reading.span(MethodSpan(
        synth, "synthesize", lambda v: ((), {"query": _bundle(v), "nodes": v["nodes"]}),
        lambda v, o: [SynthesizeStartEvent(query=_bundle(v))],
        lambda v, o: [SynthesizeEndEvent(query=_bundle(v), response=o["response"])],
        lambda o: o["response"]), {"query": query, "nodes": nodes}, {"response": Ref(module, "response")})
    # one LLM call only: a query whose context needs refine steps (prompt SKIPPED) runs natively, with its own spans
    inputs = {"query": query, "nodes": nodes, "prompt": Ref(module, "prompt")}
    text = {"text": Ref(module, "text")}
    with reading.inside(synthesize):
        outer = reading.span(MethodSpan(synth, "get_response", lambda v: ((), {"query_str": v["query"],
                                                                               "text_chunks": texts(v)}),
                                        result=parsed), inputs, text)
    with reading.inside(outer):
        inner = reading.span(MethodSpan(
            synth, "get_response",
            lambda v: ((), {"query_str": v["query"], "text_chunks": chunks(v["query"], v["nodes"])[0],
                            "prev_response": None}),
            lambda v, o: [GetResponseStartEvent(query_str=v["query"], text_chunks=chunks(v["query"], v["nodes"])[0])],
            lambda v, o: [GetResponseEndEvent()], parsed), inputs, text)
    with reading.inside(inner):
        llm_call_spans(reading, li.synthesizer_parts(synth).llm,
                       lambda v: (template(v["query"]), {"context_str": chunks(v["query"], v["nodes"])[1][0]}),
                       inputs, Ref(module, "text"))


def query_engine_span(reading: "AppReading", engine: Any, response: Ref) -> str:
    """``engine._query``, under the query's own span (``query_span``): the region its components' spans go under."""
    return reading.span(MethodSpan(engine, "_query", lambda v: ((_bundle(v),), {}), result=lambda o: o["response"]),
                        {"query": QueryInput("query_str")}, {"response": response})
