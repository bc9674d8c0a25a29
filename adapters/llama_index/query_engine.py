"""Reading a LlamaIndex query engine into a module graph, family by family."""

from __future__ import annotations

from contextlib import ExitStack
from functools import partial
from typing import Any, Awaitable, Callable, Sequence

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.query_engine import CitationQueryEngine, RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.as_asked import run_as_asked
from teola.adapters.llama_index.hyde import HYDE
from teola.adapters.llama_index.reading import AppReading, UnsupportedPipelineError, recognise
from teola.adapters.llama_index.rerank import LLM_RERANK, POSTPROCESSORS
from teola.adapters.llama_index.spans import citation_retrieve_region, inner_engine_span, query_engine_span
from teola.adapters.llama_index.retrievers import RETRIEVERS, VECTOR, most_nodes
from teola.adapters.llama_index.refine import REFINE_STEPS
from teola.adapters.llama_index.router import ROUTER
from teola.adapters.llama_index.sub_question import SUB_QUESTION
from teola.adapters.llama_index.synthesizers import SYNTHESIZERS
from teola.optimizer.ir import Graph, ModuleKind, Node, Ref
from teola.optimizer.ops import FnArgs

RESPONSE = Ref("synthesize", "response")
ROUTED = Ref("routed", "response")


def read_query_engine(query_engine: Any) -> AppReading:
    """Read a LlamaIndex query engine into a module graph whose output ``response`` is its response
    (``read_engine``)."""
    li.check_version()
    if not isinstance(query_engine, BaseQueryEngine):
        raise UnsupportedPipelineError(
            f"optimize() takes a llama_index query engine (for example index.as_query_engine()) or chat engine "
            f"(index.as_chat_engine()), "
            f"got {type(query_engine).__module__}.{type(query_engine).__name__}"
        )
    reading = AppReading(Graph(inputs=("query_str",)), answers_its_caller=True)
    reading.graph.set_output("response", read_engine(reading, query_engine))
    if reading.stream is not None:  # the runtime keeps what fills it running past the query's return
        reading.graph.set_output("stream", reading.stream)
    return reading


def read_engine(reading: AppReading, query_engine: Any) -> Ref:
    """Read ``query_engine``'s ``_query`` into ``reading``; return its response. A ``RetrieverQueryEngine``:
    retrieve -> postprocess* -> synthesize, or a HyDE ``TransformQueryEngine`` around one: hypothetical
    document -> retrieve by the mean embedding of it and the query -> postprocess* -> synthesize; or a
    ``SubQuestionQueryEngine``: sub-questions -> all of them answered at once -> synthesize; or a
    ``CitationQueryEngine``: retrieve -> postprocess* -> citation chunks -> synthesize; or a
    ``RouterQueryEngine``: select -> the chosen candidate engines, each read as any engine.

    A component no recogniser lowers runs unchanged, as one call (logged once, in ``fallbacks``);
    so does any other LlamaIndex query engine, whole (``reading.whole``).
    """
    with ExitStack() as spans:
        embedding_texts = None
        if ROUTER.accepts(query_engine):
            spans.enter_context(reading.inside(query_engine_span(reading, query_engine, ROUTED)))
            return ROUTER.read(reading, query_engine, read_inner_engine)
        if HYDE.accepts(query_engine) and not HYDE.why_not(query_engine):
            spans.enter_context(reading.inside(query_engine_span(reading, query_engine, RESPONSE)))
            embedding_texts, query_engine = HYDE.read(reading, query_engine)
            spans.enter_context(reading.inside(inner_engine_span(reading, query_engine, RESPONSE, embedding_texts[0])))
        if SUB_QUESTION.accepts(query_engine):
            spans.enter_context(reading.inside(query_engine_span(reading, query_engine, RESPONSE)))
            return SUB_QUESTION.read(reading, query_engine, read_inner_engine)
        if isinstance(query_engine, CitationQueryEngine) and not li.is_multimodal_citation(query_engine):
            spans.enter_context(reading.inside(query_engine_span(reading, query_engine, RESPONSE)))
            _read_citation(reading, query_engine)
            return RESPONSE
        if not isinstance(query_engine, RetrieverQueryEngine):
            reading.fallback(query_engine, _why_whole(query_engine))
            reading.whole = True
            return _call(reading, "synthesize", {"query": reading.query}, "response", query_engine,
                         lambda query: query_engine.query(query), lambda query: query_engine.aquery(query))
        spans.enter_context(reading.inside(query_engine_span(reading, query_engine, RESPONSE)))
        nodes = read_retriever(reading, query_engine.retriever, embedding_texts)
        nodes, bound = read_postprocessors(reading, li.postprocessors(query_engine), nodes,
                                           most_nodes(query_engine.retriever))
        read_synthesizer(reading, li.synthesizer(query_engine), nodes, bound)
    return RESPONSE


def read_inner_engine(reading: AppReading, engine: Any, query: Ref, prefix: str,
                      answers_its_caller: bool = False) -> Ref:
    """``engine`` (a query engine another one asks: a router's candidate, a sub-question's tool, a
    condense-question chat engine's query engine) read on its own, then added under the name
    ``prefix``, asked ``query``: inside its ``query`` span, with its query events, where it is lowered
    (one run whole reports its own); returns its response. ``answers_its_caller``: its answer is the
    app's (a streamed chat turn's), so a streaming synthesizer streams it to the app's caller
    (``reading.stream``)."""
    inner = AppReading(Graph(inputs=("query_str",)), answers_its_caller=answers_its_caller)
    response = read_engine(inner, engine)
    inner.graph.set_output("response", response)
    if inner.stream is not None:
        inner.graph.set_output("stream", inner.stream)
    reading.take(inner)
    with reading.asking(query):
        region = reading.region if inner.whole else \
            inner_engine_span(reading, engine, Ref(prefix + response.node, response.output))
    outputs = reading.graph.inline(inner.graph, prefix, {"query_str": query}, region)
    reading.stream = outputs.get("stream", reading.stream)
    return outputs["response"]


def _why_whole(query_engine: Any) -> str:
    """Why a query engine runs whole, as one call."""
    if HYDE.accepts(query_engine):
        return HYDE.why_not(query_engine) or ""
    if isinstance(query_engine, CitationQueryEngine):
        return "multimodal citations (Teola cites text)"
    return ("Teola lowers RetrieverQueryEngine, CitationQueryEngine, SubQuestionQueryEngine and RouterQueryEngine "
            "pipelines (and HyDE around a RetrieverQueryEngine) so far")


def _read_citation(reading: AppReading, engine: CitationQueryEngine) -> None:
    """retrieve -> postprocess* -> cite (the numbered citation chunks, as the engine makes them,
    inside the RETRIEVE event it opens itself) -> synthesize over the chunks."""
    cited = Ref("cite", "nodes")
    with reading.inside(citation_retrieve_region(reading, engine, cited)):
        nodes = read_retriever(reading, engine.retriever)
        nodes, _ = read_postprocessors(reading, li.postprocessors(engine), nodes, most_nodes(engine.retriever))
        reading.graph.add(Node("cite", ModuleKind.CALL, {"nodes": nodes}, ("nodes",),
                               FnArgs(partial(li.citation_nodes, engine), "citation chunks"), region=reading.region))
    read_synthesizer(reading, li.synthesizer(engine), cited, None)  # a node may be cut into several chunks


def _call(reading: AppReading, name: str, inputs: dict, output: str, component: Any, fn: Callable[..., Any],
          twin: Callable[..., Awaitable[Any]]) -> Ref:
    """``component`` run as-is, as one call module: ``fn``, or in an ``aquery`` its async ``twin``
    (``run_as_asked``), inside the span being read (its own spans go there)."""
    reading.graph.add(Node(name, ModuleKind.CALL, inputs, (output,),
                           FnArgs(partial(run_as_asked, fn, twin), type(component).__name__), region=reading.region))
    return Ref(name, output)


def read_retriever(reading: AppReading, retriever: Any, embedding_texts: tuple[Ref, int] | None = None) -> Ref:
    """The retrieve module(s) of ``retriever`` (one call where no recogniser lowers it), for ``reading.query``."""
    if embedding_texts is not None:  # HyDE checked its inner retriever is a readable vector retriever
        return VECTOR.read(reading, retriever, embedding_texts=embedding_texts, after=("hyde",))
    recogniser, why = recognise(RETRIEVERS, retriever)
    if recogniser is not None:
        return recogniser.read(reading, retriever)
    reading.fallback(retriever, why)
    return _call(reading, "retrieve", {"query": reading.query}, "nodes", retriever,
                 lambda query: retriever.retrieve(query), lambda query: retriever.aretrieve(query))


def read_postprocessors(reading: AppReading, postprocessors: Sequence[Any], nodes: Ref,
                        bound: int | None) -> tuple[Ref, int | None]:
    """The postprocess modules, in order, over ``nodes`` (at most ``bound`` of them): the nodes they
    leave, and how many there can be (None: any number; a postprocessor may return any)."""
    for i, postprocessor in enumerate(postprocessors):
        nodes, bound = _read_postprocessor(reading, f"postprocess{i}", postprocessor, nodes, bound), None
    return nodes, bound


def _read_postprocessor(reading: AppReading, name: str, postprocessor: Any, nodes: Ref, bound: int | None) -> Ref:
    """LLMRerank over a bounded list of candidates lowers; any other postprocessor runs as a call
    (it is one local step either way: nothing is lost but LLMRerank's batches)."""
    recogniser, _ = recognise(POSTPROCESSORS, postprocessor)
    if recogniser is LLM_RERANK and bound:
        return LLM_RERANK.read(reading, postprocessor, name, nodes, bound)
    reading.graph.add(Node(name, ModuleKind.POSTPROCESS, {"nodes": nodes, "query": reading.query}, ("nodes",),
                           FnArgs(_postprocess_fn(postprocessor), type(postprocessor).__name__), after=(nodes.node,),
                           region=reading.region))
    return Ref(name, "nodes")


def _postprocess_fn(postprocessor: Any) -> Callable[..., list[NodeWithScore]]:
    def postprocess(nodes: list[NodeWithScore], query: str) -> list[NodeWithScore]:
        return postprocessor.postprocess_nodes(nodes, query_bundle=QueryBundle(query))

    return postprocess


def read_synthesizer(reading: AppReading, synth: Any, nodes: Ref, most_nodes: int | None) -> None:
    """The synthesize module(s) of ``synth`` over ``nodes`` (one call where no recogniser lowers it;
    a streaming one streams its answer to the app's caller only)."""
    recogniser, why = recognise((*REFINE_STEPS, *SYNTHESIZERS), synth)
    if recogniser is not None and li.synthesizer_streams(synth) and not reading.answers_its_caller:
        recogniser, why = None, "it streams the answer of an engine another one asks (Teola streams the answer of " \
                                "the engine it wraps)"
    if recogniser is not None:
        recogniser.read(reading, synth, nodes, most_nodes)
        return
    reading.fallback(synth, why)
    _call(reading, "synthesize", {"query": reading.query, "nodes": nodes}, "response", synth, synth.synthesize,
          synth.asynthesize)
