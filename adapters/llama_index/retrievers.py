"""Retriever families: a vector index retriever, and query fusion over such retrievers."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

from llama_index.core.base.embeddings.base import mean_agg
from llama_index.core.retrievers import QueryFusionRetriever, VectorIndexRetriever
from llama_index.core.retrievers.fusion_retriever import FUSION_MODES
from llama_index.core.schema import NodeWithScore
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import VectorStoreQueryMode
from llama_index.core.vector_stores.utils import build_metadata_filter_fn

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index.models import completion_prompt, embedding_for, embedding_why_not, llm_for, llm_why_not
from teola.adapters.bindings import object_key
from teola.adapters.llama_index.reading import AppReading, IndexSource, Recogniser
from teola.adapters.llama_index.spans import completion_spans, fusion_spans, retriever_spans
from teola.optimizer.ir import ModuleKind, Node, Ref, Source
from teola.optimizer.ops import FnArgs, GenerateArgs, RetrieveArgs
from teola.optimizer.values import Prompt

def _index_source(store: Any, node_ids: Sequence[str] | None, filters: Any = None) -> IndexSource:
    """The store's vectors; for SimpleVectorStore only those its own query searches: the ones
    ``node_ids`` allows whose metadata passes ``filters`` (LlamaIndex's own filter function).

    FaissVectorStore's query ignores node ids, so its index is searched whole, as it is natively.
    """
    if li.is_faiss_store(store):
        return IndexSource(f"faiss:{object_key(store)}", faiss_index=li.faiss_index(store))
    ids = _searched_ids(store, node_ids, filters)
    digest = hashlib.sha1("\0".join(ids).encode()).hexdigest()[:12]
    return IndexSource(f"simple:{object_key(store)}:{digest}", ids=ids, vectors=[store.data.embedding_dict[i] for i in ids])


def _searched_ids(store: SimpleVectorStore, node_ids: Sequence[str] | None, filters: Any) -> tuple[str, ...]:
    """The ids of a SimpleVectorStore a query with these node ids and metadata filters searches."""
    allowed = set(node_ids) if node_ids else None
    passes = build_metadata_filter_fn(lambda node_id: store.data.metadata_dict[node_id], filters)
    return tuple(i for i in store.data.embedding_dict if (allowed is None or i in allowed) and passes(i))


def _to_nodes_fn(retriever: VectorIndexRetriever, store: Any, snapshot_size: int | None) -> Callable[..., list[NodeWithScore]]:
    """Search hits -> NodeWithScore list, through the retriever's own node mapping."""

    def to_nodes(hits: list[tuple[str, float]], query: str) -> list[NodeWithScore]:
        if snapshot_size is not None and len(store.data.embedding_dict) != snapshot_size:
            raise RuntimeError("the index changed after optimize(): call optimize() again so Teola serves the new nodes")
        return li.scored_nodes(retriever, [i for i, _ in hits], [s for _, s in hits], query)

    return to_nodes


class VectorRetrieverRecogniser(Recogniser):
    """``index.as_retriever()``: embed the query, search the store's vectors, map hits to its nodes."""

    family = "VectorIndexRetriever"

    def accepts(self, component: Any) -> bool:
        return type(component) is VectorIndexRetriever

    def why_not(self, component: Any) -> str | None:
        parts = li.vector_retriever(component)
        why = embedding_why_not(parts.embed_model)
        if why:
            return why
        if parts.query_mode != VectorStoreQueryMode.DEFAULT:
            return f"query mode {parts.query_mode.value!r} (Teola runs dense search)"
        if parts.restricted:
            return "doc id restrictions or vector store kwargs"
        if not li.is_faiss_store(parts.store) and type(parts.store) is not SimpleVectorStore:
            return f"vector store {type(parts.store).__name__} (Teola reads SimpleVectorStore and FaissVectorStore)"
        if parts.filters is not None:
            return _filters_why_not(parts.store, parts.node_ids, parts.filters)
        return None

    def read(self, reading: AppReading, retriever: VectorIndexRetriever, name: str = "retrieve",
             query: Source | None = None, batch: bool = False, after: tuple[str, ...] = (),
             embedding_texts: tuple[Ref, int] | None = None, spans_async: bool | None = None) -> Ref:
        """A retrieve module for ``retriever``. With ``batch`` its query input is a list of texts (the
        caller declares the items' spans); with ``embedding_texts`` (a list of texts, and how many it may
        hold) it searches by the mean embedding of those texts (HyDE's bundle). ``spans_async``: its spans'
        ``MethodSpan.asynchronous`` (True: its caller runs it asynchronously even in a ``query``)."""
        query = query or reading.query
        parts = li.vector_retriever(retriever)
        index = _index_source(parts.store, parts.node_ids, parts.filters)
        if index.key not in {i.key for i in reading.indexes}:
            reading.indexes.append(index)
        inputs: dict[str, Source] = {"query": query}
        if embedding_texts is not None:
            inputs["embedding_texts"] = embedding_texts[0]
        snapshot = None if index.faiss_index is not None else len(parts.store.data.embedding_dict)
        args = RetrieveArgs(embedding_for(reading, parts.embed_model).engine, index.engine, parts.top_k,
                            _to_nodes_fn(retriever, parts.store, snapshot),
                            mean_agg if embedding_texts is not None else None, batch=batch)
        reading.graph.add(Node(name, ModuleKind.RETRIEVE, inputs, ("nodes",), args, after=after))
        if not batch:
            retriever_spans(reading, retriever, parts.embed_model, name, query, asynchronous=spans_async,
                            embedding_texts=embedding_texts)
        return Ref(name, "nodes")


def _filters_why_not(store: Any, node_ids: Sequence[str] | None, filters: Any) -> str | None:
    """Why metadata filters keep a retriever from being lowered: they are lowered on a
    SimpleVectorStore, as the subset of its vectors they let through (filters are fixed when the
    retriever is built); its query raises where the store lacks metadata, or searches nothing."""
    if li.is_faiss_store(store):
        return "metadata filters on a FaissVectorStore (which does not take them)"
    if store.data.embedding_dict and not store.data.metadata_dict:
        return "metadata filters on a store persisted without metadata"
    if not _searched_ids(store, node_ids, filters):
        return "its metadata filters let no node through"
    return None


VECTOR = VectorRetrieverRecogniser()
_FUSIONS = (FUSION_MODES.RECIPROCAL_RANK, FUSION_MODES.RELATIVE_SCORE, FUSION_MODES.DIST_BASED_SCORE, FUSION_MODES.SIMPLE)


class FusionRecogniser(Recogniser):
    """QueryFusionRetriever: the LLM writes ``num_queries - 1`` queries; the original and each
    generated query are retrieved by every retriever; the retriever's own fusion merges the lists.

    The module order records the native one (generate, then retrieve); the data edges say the
    original query's retrievals need no generated query.
    """

    family = "QueryFusionRetriever"

    def accepts(self, component: Any) -> bool:
        return type(component) is QueryFusionRetriever

    def why_not(self, component: Any) -> str | None:
        for sub in li.fusion_retrievers(component):
            why = VECTOR.why_not(sub) if VECTOR.accepts(sub) else f"Teola reads {VECTOR.family}"
            if why:
                return f"one of its retrievers is not readable: {why}"
        why = llm_why_not(li.fusion_llm(component)) if component.num_queries > 1 else None
        if why:
            return why
        if component.mode not in _FUSIONS:
            return f"fusion mode {component.mode!r}"
        return None

    def read(self, reading: AppReading, retriever: QueryFusionRetriever) -> Ref:
        """expand (the generated queries) -> retrieve each query with each retriever -> fuse."""
        with reading.inside(fusion_spans(reading, retriever, "retrieve")):
            return self._read(reading, retriever)

    def _read(self, reading: AppReading, retriever: QueryFusionRetriever) -> Ref:
        generated = retriever.num_queries - 1
        query = reading.query
        if generated > 0:
            llm = li.fusion_llm(retriever)
            bound = llm_for(reading, llm)
            reading.graph.add(Node("expand", ModuleKind.GENERATE, {"query": query}, ("queries",), GenerateArgs(
                bound.engine, bound.sampling, _query_gen_prompt_fn(retriever, generated),
                parse=_generated_queries_fn(generated), max_items=generated)))
            completion_spans(reading, llm, lambda v: retriever.query_gen_prompt.format(num_queries=generated, query=v["query"]),
                             {"query": query}, Ref("expand", "text"))
        fuse_inputs: dict[str, Source] = {"query": query}
        last = ("expand",) if generated > 0 else ()
        subs = li.fusion_retrievers(retriever)
        sub_spans_async = True if retriever.use_async else None  # use_async: its retrievals run async in query too
        for i, sub in enumerate(subs):
            fuse_inputs[f"original{i}"] = VECTOR.read(reading, sub, f"retrieve{i}", query, after=last,
                                                      spans_async=sub_spans_async)
            last = (f"retrieve{i}",)
        for i, sub in enumerate(subs if generated > 0 else ()):
            module = f"retrieve{i}_generated"
            fuse_inputs[f"generated{i}"] = VECTOR.read(reading, sub, module, Ref("expand", "queries"), batch=True, after=last)
            last = (module,)
            for k in range(generated):
                retriever_spans(reading, sub, li.vector_retriever(sub).embed_model, module, Ref("expand", "queries"),
                                item=k, asynchronous=sub_spans_async)
        if generated > 0:
            fuse_inputs["queries"] = Ref("expand", "queries")
        reading.graph.add(Node("retrieve", ModuleKind.FUSE, fuse_inputs, ("nodes",),
                               FnArgs(_fusion_fn(retriever), f"{FUSION_MODES(retriever.mode).value} fusion"), after=last))
        return Ref("retrieve", "nodes")


def _query_gen_prompt_fn(retriever: QueryFusionRetriever, generated: int) -> Callable[[str], Prompt]:
    """The query-generation prompt, as QueryFusionRetriever formats it and its LLM's complete() sends it."""
    llm = li.fusion_llm(retriever)

    def build_prompt(query: str) -> Prompt:
        return completion_prompt(llm, retriever.query_gen_prompt.format(num_queries=generated, query=query))

    return build_prompt


def _generated_queries_fn(generated: int) -> Callable[[str], list[str]]:
    """QueryFusionRetriever's reading of the LLM's answer: one query a non-empty line, code fences
    stripped, at most ``generated`` of them (the same steps as its ``_get_queries``)."""

    def parse(text: str) -> list[str]:
        lines = (line.strip() for line in text.strip("`").split("\n"))
        return [line for line in lines if line][:generated]

    return parse


def _fusion_fn(retriever: QueryFusionRetriever) -> Callable[..., list[NodeWithScore]]:
    """The per-(query, retriever) results, keyed and ordered as the native retriever keys them, fused."""
    count = len(li.fusion_retrievers(retriever))

    def fuse(query: str, queries: Sequence[str] = (), **lists: list) -> list[NodeWithScore]:
        results: dict[tuple[str, int], list[NodeWithScore]] = {}
        for i in range(count):
            results[(query, i)] = lists[f"original{i}"]
        for k, generated_query in enumerate(queries):
            for i in range(count):
                results[(generated_query, i)] = lists[f"generated{i}"][k]
        fused = li.fuse(retriever, retriever.mode, results)[: retriever.similarity_top_k]
        return li.recursive_retrieval(retriever, query, fused)

    return fuse


FUSION = FusionRecogniser()
RETRIEVERS: tuple[Recogniser, ...] = (FUSION, VECTOR)


def most_nodes(retriever: Any) -> int | None:
    """The most nodes ``retriever`` can return, where Teola reads it."""
    if FUSION.accepts(retriever) or VECTOR.accepts(retriever):
        return retriever.similarity_top_k
    return None
