"""LlamaIndex adapter: reads a query engine into a module graph and converts results back.

It runs nothing itself. What it cannot express as primitives it hands over as a ``call`` module
that runs the user's component unchanged (with one log line saying so). The callables it puts in
module arguments reuse LlamaIndex's own code (prompt helper, templates, node mapping, response
building) so that the optimized run computes the very prompt and response the native run does.

Engines are recognised by duck typing: an LLM or embedding model backed by a Teola engine carries
``teola_engine`` (the engine's ``EngineId``) and, for LLMs, ``teola_sampling``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.llms.types import ChatMessage as LIChatMessage
from llama_index.core.base.llms.types import MessageRole
from llama_index.core.prompts.prompt_utils import get_biggest_prompt
from llama_index.core.base.embeddings.base import mean_agg
from llama_index.core.indices.query.query_transform import HyDEQueryTransform
from llama_index.core.query_engine import RetrieverQueryEngine, TransformQueryEngine
from llama_index.core.response_synthesizers import CompactAndRefine, TreeSummarize
from llama_index.core.retrievers import QueryFusionRetriever, VectorIndexRetriever
from llama_index.core.retrievers.fusion_retriever import FUSION_MODES
from llama_index.core.postprocessor import LLMRerank
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import VectorStoreQueryMode

from teola.adapters import llama_index_compat as li
from teola.optimizer.ir import Graph, ModuleKind, Node, QueryInput, Ref, Source
from teola.optimizer.ops import EngineId, EngineKind, FnArgs, GenerateArgs, PrefixSpec, RetrieveArgs, SynthesizeArgs
from teola.optimizer.values import CONTEXT_MARK, SKIPPED, ChatMessage, Prompt, PromptPrefix

log = logging.getLogger(__name__)

_ROLES = {MessageRole.SYSTEM: "system", MessageRole.USER: "user", MessageRole.ASSISTANT: "assistant"}


class UnsupportedPipelineError(TypeError):
    """``optimize()`` was given an object it cannot read at all."""


def to_prompt(messages: Sequence[LIChatMessage]) -> Prompt:
    """LlamaIndex chat messages as a framework-free ``Prompt``."""
    converted = []
    for message in messages:
        if message.role not in _ROLES:
            raise ValueError(f"Teola's LLM engine takes system, user and assistant messages, got role {message.role.value!r}")
        converted.append(ChatMessage(_ROLES[message.role], message.content or ""))
    return Prompt(messages=tuple(converted))


@dataclass(frozen=True)
class IndexSource:
    """The vectors a vector index engine must serve, read off a LlamaIndex vector store.

    Either ``ids`` + ``vectors`` (a copy, searched by cosine similarity, as SimpleVectorStore does)
    or ``faiss_index`` (the store's own faiss index, searched in place; ids are positions). ``key``
    names what it serves: the store (for as long as it lives) and, for a copy, which ids.
    """

    key: str
    ids: tuple[str, ...] = ()
    vectors: Any = None
    faiss_index: Any = None

    @property
    def engine(self) -> EngineId:
        """The vector index engine that serves it."""
        return EngineId.of(EngineKind.VECTOR_INDEX, self.key)


_store_keys: dict[int, tuple[weakref.ref, str]] = {}


def _store_key(store: Any) -> str:
    """A key of ``store`` no other store gets, while it lives or after (``id()`` is reused once an
    object is gone, so a new store there would be served an old store's vectors)."""
    known = _store_keys.get(id(store))
    if known is None or known[0]() is not store:
        known = (weakref.ref(store), uuid.uuid4().hex[:12])
        _store_keys[id(store)] = known
    return known[1]


@dataclass
class AppReading:
    """What the adapter read: the module graph, and the vector indexes it needs as engines."""

    graph: Graph
    indexes: list[IndexSource] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)


def read_query_engine(query_engine: Any) -> AppReading:
    """Read a ``RetrieverQueryEngine`` into a module graph: retrieve -> postprocess* -> synthesize,
    or a HyDE ``TransformQueryEngine`` around one: hypothetical document -> retrieve by the mean
    embedding of it and the query -> postprocess* -> synthesize.

    Any other LlamaIndex query engine (SubQuestionQueryEngine ...) runs whole, unchanged, as one call.
    """
    li.check_version()
    if not isinstance(query_engine, BaseQueryEngine):
        raise UnsupportedPipelineError(
            f"optimize() takes a llama_index query engine (for example index.as_query_engine()), "
            f"got {type(query_engine).__module__}.{type(query_engine).__name__}"
        )
    reading = AppReading(Graph(inputs=("query_str",)))
    embedding_texts = None
    if type(query_engine) is TransformQueryEngine and _is_readable_hyde(query_engine):
        transform, query_engine = li.transform_parts(query_engine)
        embedding_texts = _add_hyde(reading, transform)
    if not isinstance(query_engine, RetrieverQueryEngine):
        _fallback(reading, query_engine, "Teola lowers RetrieverQueryEngine pipelines (and HyDE around them) so far")
        reading.graph.add(Node("synthesize", ModuleKind.CALL, {"query": QueryInput("query_str")}, ("response",),
                               FnArgs(lambda query: query_engine.query(query), type(query_engine).__name__)))
        reading.graph.set_output("response", Ref("synthesize", "response"))
        return reading
    nodes_ref = _read_retriever(query_engine.retriever, reading, embedding_texts)
    most_nodes = _most_nodes(query_engine.retriever)
    for i, postprocessor in enumerate(li.postprocessors(query_engine)):
        name = f"postprocess{i}"
        if type(postprocessor) is LLMRerank and hasattr(postprocessor.llm, "teola_engine") and most_nodes:
            _add_llm_rerank(reading, name, postprocessor, nodes_ref, most_nodes)
        else:
            reading.graph.add(Node(name, ModuleKind.POSTPROCESS, {"nodes": nodes_ref, "query": QueryInput("query_str")},
                                   ("nodes",), FnArgs(_postprocess_fn(postprocessor), type(postprocessor).__name__),
                                   after=(nodes_ref.node,)))
        nodes_ref = Ref(name, "nodes")
        most_nodes = None  # a postprocessor may return any number of nodes
    _read_synthesizer(li.synthesizer(query_engine), nodes_ref, reading)
    reading.graph.set_output("response", Ref("synthesize", "response"))
    return reading


def _fallback(reading: AppReading, component: Any, why: str) -> None:
    message = f"{type(component).__name__} runs unoptimized, as one call: {why}"
    log.warning("teola: %s", message)
    reading.fallbacks.append(message)


def _is_readable_hyde(engine: TransformQueryEngine) -> bool:
    transform, inner = li.transform_parts(engine)
    return (type(transform) is HyDEQueryTransform and hasattr(li.hyde_parts(transform).llm, "teola_engine")
            and type(inner) is RetrieverQueryEngine and not _why_not_optimizable_retriever(inner.retriever))


def _add_hyde(reading: AppReading, hyde: HyDEQueryTransform) -> Ref:
    """The LLM writes a hypothetical answer document; it (and the query, if included) are what
    the retriever embeds, as HyDEQueryTransform's query bundle asks."""
    parts = li.hyde_parts(hyde)
    llm = parts.llm
    reading.graph.add(Node("hyde.generate", ModuleKind.GENERATE, {"query": QueryInput("query_str")}, ("text",),
                           GenerateArgs(llm.teola_engine, llm.teola_sampling,
                                        lambda query: _render(llm, parts.prompt, context_str=query))))

    def embedding_texts(query: str, text: str) -> list[str]:
        document = li.parse_output(llm, text)
        return [document, *QueryBundle(query).embedding_strs] if parts.include_original else [document]

    reading.graph.add(Node("hyde", ModuleKind.CALL, {"query": QueryInput("query_str"), "text": Ref("hyde.generate", "text")},
                           ("texts",), FnArgs(embedding_texts, "HyDE embedding texts", pure=True)))
    return Ref("hyde", "texts")


def _read_retriever(retriever: Any, reading: AppReading, embedding_texts: Ref | None = None) -> Ref:
    if embedding_texts is not None:
        _add_vector_retrieve(reading, "retrieve", retriever, QueryInput("query_str"), embedding_texts=embedding_texts,
                             after=("hyde",))
        return Ref("retrieve", "nodes")
    if type(retriever) is QueryFusionRetriever:
        why = _why_not_optimizable_fusion(retriever)
        if not why:
            return _read_fusion_retriever(retriever, reading)
    else:
        why = _why_not_optimizable_retriever(retriever)
        if not why:
            _add_vector_retrieve(reading, "retrieve", retriever, QueryInput("query_str"))
            return Ref("retrieve", "nodes")
    _fallback(reading, retriever, why)
    reading.graph.add(Node("retrieve", ModuleKind.CALL, {"query": QueryInput("query_str")}, ("nodes",),
                           FnArgs(lambda query: retriever.retrieve(query), type(retriever).__name__)))
    return Ref("retrieve", "nodes")


def _add_vector_retrieve(reading: AppReading, name: str, retriever: VectorIndexRetriever, query: Source,
                         batch: bool = False, after: tuple[str, ...] = (), embedding_texts: Ref | None = None) -> None:
    """A retrieve module for ``retriever``. With ``batch`` its query input is a list of texts; with
    ``embedding_texts`` it searches by the mean embedding of those texts (a custom query bundle)."""
    parts = li.vector_retriever(retriever)
    store = parts.store
    index = _index_source(store, parts.node_ids)
    if index.key not in {i.key for i in reading.indexes}:
        reading.indexes.append(index)
    inputs: dict[str, Source] = {"query": query}
    if embedding_texts is not None:
        inputs["embedding_texts"] = embedding_texts
    to_nodes = _to_nodes_fn(retriever, store, None if index.faiss_index is not None else len(store.data.embedding_dict))
    args = RetrieveArgs(parts.embed_model.teola_engine, index.engine, parts.top_k, to_nodes, mean_agg if embedding_texts is not None else None,
                        batch=batch)
    reading.graph.add(Node(name, ModuleKind.RETRIEVE, inputs, ("nodes",), args, after=after))


def _why_not_optimizable_fusion(retriever: QueryFusionRetriever) -> str | None:
    for sub in li.fusion_retrievers(retriever):
        why = _why_not_optimizable_retriever(sub)
        if why:
            return f"one of its retrievers is not readable: {why}"
    if retriever.num_queries > 1 and not hasattr(li.fusion_llm(retriever), "teola_engine"):
        return "its LLM is not backed by a Teola engine (use teola_integrations.llama_index.TeolaLLM)"
    if retriever.mode not in _FUSIONS:
        return f"fusion mode {retriever.mode!r}"
    return None


_FUSIONS = (FUSION_MODES.RECIPROCAL_RANK, FUSION_MODES.RELATIVE_SCORE, FUSION_MODES.DIST_BASED_SCORE,
            FUSION_MODES.SIMPLE)


def _read_fusion_retriever(retriever: QueryFusionRetriever, reading: AppReading) -> Ref:
    """QueryFusionRetriever: the LLM writes ``num_queries - 1`` queries; the original and each generated
    query are retrieved by every retriever; the retriever's own fusion merges the lists.

    The module order records the native one (generate, then retrieve); the data edges say the
    original query's retrievals need no generated query.
    """
    generated = retriever.num_queries - 1
    query = QueryInput("query_str")
    if generated > 0:
        llm = li.fusion_llm(retriever)
        reading.graph.add(Node("expand", ModuleKind.GENERATE, {"query": query}, ("queries",), GenerateArgs(
            llm.teola_engine, llm.teola_sampling, _query_gen_prompt_fn(retriever, generated),
            parse=_generated_queries_fn(generated), max_items=generated)))
    fuse_inputs: dict[str, Source] = {"query": query}
    last = ("expand",) if generated > 0 else ()
    subs = li.fusion_retrievers(retriever)
    for i, sub in enumerate(subs):
        _add_vector_retrieve(reading, f"retrieve{i}", sub, query, after=last)
        fuse_inputs[f"original{i}"] = Ref(f"retrieve{i}", "nodes")
        last = (f"retrieve{i}",)
    for i, sub in enumerate(subs if generated > 0 else ()):
        _add_vector_retrieve(reading, f"retrieve{i}_generated", sub, Ref("expand", "queries"), batch=True, after=last)
        fuse_inputs[f"generated{i}"] = Ref(f"retrieve{i}_generated", "nodes")
        last = (f"retrieve{i}_generated",)
    if generated > 0:
        fuse_inputs["queries"] = Ref("expand", "queries")
    reading.graph.add(Node("retrieve", ModuleKind.FUSE, fuse_inputs, ("nodes",),
                           FnArgs(_fusion_fn(retriever), f"{FUSION_MODES(retriever.mode).value} fusion"), after=last))
    return Ref("retrieve", "nodes")


def _query_gen_prompt_fn(retriever: QueryFusionRetriever, generated: int) -> Callable[[str], Prompt]:
    """The query-generation prompt, as QueryFusionRetriever formats it and TeolaLLM.complete sends it."""

    def build_prompt(query: str) -> Prompt:
        return Prompt(text=retriever.query_gen_prompt.format(num_queries=generated, query=query))

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


def _why_not_optimizable_retriever(retriever: Any) -> str | None:
    if type(retriever) is not VectorIndexRetriever:
        return "Teola reads VectorIndexRetriever (index.as_retriever())"
    parts = li.vector_retriever(retriever)
    if not hasattr(parts.embed_model, "teola_engine"):
        return "its embedding model is not backed by a Teola engine (use teola_integrations.llama_index.TeolaEmbedding)"
    if parts.query_mode != VectorStoreQueryMode.DEFAULT:
        return f"query mode {parts.query_mode.value!r} (Teola runs dense search)"
    if parts.restricted:
        return "metadata filters, doc id restrictions or vector store kwargs"
    if not li.is_faiss_store(parts.store) and type(parts.store) is not SimpleVectorStore:
        return f"vector store {type(parts.store).__name__} (Teola reads SimpleVectorStore and FaissVectorStore)"
    return None


def _index_source(store: Any, node_ids: Sequence[str] | None) -> IndexSource:
    """The store's vectors; for SimpleVectorStore only those ``node_ids`` allows, as its own query does.

    FaissVectorStore's query ignores node ids, so its index is searched whole, as it is natively.
    """
    if li.is_faiss_store(store):
        return IndexSource(f"faiss:{_store_key(store)}", faiss_index=li.faiss_index(store))
    allowed = set(node_ids) if node_ids else None
    ids = tuple(i for i in store.data.embedding_dict if allowed is None or i in allowed)
    digest = hashlib.sha1("\0".join(ids).encode()).hexdigest()[:12]
    return IndexSource(f"simple:{_store_key(store)}:{digest}", ids=ids, vectors=[store.data.embedding_dict[i] for i in ids])


def _to_nodes_fn(retriever: VectorIndexRetriever, store: Any, snapshot_size: int | None) -> Callable[..., list[NodeWithScore]]:
    """Search hits -> NodeWithScore list, through the retriever's own node mapping."""

    def to_nodes(hits: list[tuple[str, float]], query: str) -> list[NodeWithScore]:
        if snapshot_size is not None and len(store.data.embedding_dict) != snapshot_size:
            raise RuntimeError("the index changed after optimize(): call optimize() again so Teola serves the new nodes")
        return li.scored_nodes(retriever, [i for i, _ in hits], [s for _, s in hits], query)

    return to_nodes


def _most_nodes(retriever: Any) -> int | None:
    """The most nodes ``retriever`` can return, where Teola reads it."""
    if type(retriever) in (QueryFusionRetriever, VectorIndexRetriever):
        return retriever.similarity_top_k
    return None


def _add_llm_rerank(reading: AppReading, name: str, rerank: LLMRerank, nodes: Ref, most_nodes: int) -> None:
    """LLMRerank as one LLM call per batch of candidates (LlamaIndex runs them one after another;
    their data are independent) and a join that parses, sorts and cuts as LLMRerank does."""
    size = rerank.choice_batch_size
    llm = rerank.llm
    query = QueryInput("query_str")
    join_inputs: dict[str, Source] = {"query": query, "nodes": nodes}
    last = (nodes.node,)
    for b, start in enumerate(range(0, most_nodes, size)):
        reading.graph.add(Node(f"{name}.batch{b}", ModuleKind.GENERATE,
                               {"query": query, "nodes": Ref(nodes.node, nodes.output, (start, start + size))}, ("text",),
                               GenerateArgs(llm.teola_engine, llm.teola_sampling, _rerank_prompt_fn(rerank),
                                            PrefixSpec(_rerank_prefix_fn(rerank), ("query",))), after=last))
        join_inputs[f"answer{b}"] = Ref(f"{name}.batch{b}", "text")
        last = (f"{name}.batch{b}",)
    reading.graph.add(Node(name, ModuleKind.POSTPROCESS, join_inputs, ("nodes",),
                           FnArgs(_rerank_join_fn(rerank), "LLMRerank join", pure=True, runs_on_skipped=True), after=last))


def _rerank_prompt_fn(rerank: LLMRerank) -> Callable[..., Prompt | Any]:
    """(query, one batch of candidates) -> the choice-select prompt LLMRerank sends for it."""

    def build_prompt(query: str, nodes: list[NodeWithScore]) -> Prompt | Any:
        if not nodes:
            return SKIPPED
        kwargs = li.rerank_kwargs(rerank, [n.node for n in nodes], query)
        return _render(rerank.llm, rerank.choice_select_prompt, **kwargs)

    return build_prompt


def _rerank_prefix_fn(rerank: LLMRerank) -> Callable[[str], PromptPrefix]:
    """query -> the choice-select prompt up to where the candidates go."""

    def build_prefix(query: str) -> PromptPrefix:
        kwargs = li.rerank_kwargs(rerank, [TextNode(text=CONTEXT_MARK)], query)
        return PromptPrefix(_render(rerank.llm, rerank.choice_select_prompt, **kwargs), CONTEXT_MARK)

    return build_prefix


def _rerank_join_fn(rerank: LLMRerank) -> Callable[..., list[NodeWithScore]]:
    """Each batch's answer parsed against its candidates, then sorted and cut to top_n, as LLMRerank does."""

    def join(query: str, nodes: list[NodeWithScore], **answers: Any) -> list[NodeWithScore]:
        if not nodes:
            return []
        results: list[NodeWithScore] = []
        for b, batch in enumerate(li.rerank_batches(rerank, nodes)):
            raw = li.parse_output(rerank.llm, answers[f"answer{b}"])
            results.extend(li.rerank_choices(rerank, raw, batch))
        return sorted(results, key=lambda x: x.score or 0.0, reverse=True)[: rerank.top_n]

    return join


def _postprocess_fn(postprocessor: Any) -> Callable[..., list[NodeWithScore]]:
    def postprocess(nodes: list[NodeWithScore], query: str) -> list[NodeWithScore]:
        return postprocessor.postprocess_nodes(nodes, query_bundle=QueryBundle(query))

    return postprocess


def _read_synthesizer(synth: Any, nodes_ref: Ref, reading: AppReading) -> None:
    inputs = {"query": QueryInput("query_str"), "nodes": nodes_ref}
    why = _why_not_optimizable_synthesizer(synth)
    if why:
        _fallback(reading, synth, why)
        reading.graph.add(Node("synthesize", ModuleKind.CALL, inputs, ("response",),
                               FnArgs(lambda query, nodes: synth.synthesize(query=query, nodes=nodes), type(synth).__name__)))
        return
    parts = li.synthesizer_parts(synth)
    llm = parts.llm
    tree = type(synth) is TreeSummarize
    template = parts.summary_template if tree else parts.text_qa_template
    reading.graph.add(Node("synthesize", ModuleKind.SYNTHESIZE, inputs, ("response",), SynthesizeArgs(
        llm.teola_engine, llm.teola_sampling, _tree_prompts_fn(synth) if tree else _compact_prompt_fn(synth),
        PrefixSpec(_template_prefix_fn(llm, template), ("query",)),
        finish=_tree_finish_fn(synth) if tree else _compact_finish_fn(synth), batch=tree)))


def _why_not_optimizable_synthesizer(synth: Any) -> str | None:
    if type(synth) not in (CompactAndRefine, TreeSummarize):
        return "Teola lowers the 'compact' and 'tree_summarize' response modes so far"
    parts = li.synthesizer_parts(synth)
    if not parts.plain:
        return "streaming, structured output or answer filtering"
    if not hasattr(parts.llm, "teola_engine"):
        return "its LLM is not backed by a Teola engine (use teola_integrations.llama_index.TeolaLLM)"
    return None


def _render(llm: Any, template: Any, **variables: Any) -> Prompt:
    """A template with its variables filled in, as the LLM's predict() would send it."""
    messages, text = li.render(llm, template, **variables)
    return to_prompt(messages) if messages is not None else Prompt(text=text)


def _compact_prompt_fn(synth: CompactAndRefine) -> Callable[..., Prompt | Any]:
    """(query, nodes) -> the prompt of the one LLM call compact mode makes, as the native run builds it.

    Returns ``SKIPPED`` when there are no nodes, or when the context needs more than one LLM call
    (refine steps); ``finish`` then answers exactly as the native synthesizer does.
    """
    parts = li.synthesizer_parts(synth)

    def build_prompt(query: str, nodes: list[NodeWithScore]) -> Prompt | Any:
        if not nodes:
            return SKIPPED
        texts = [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes]
        compact = li.compact_chunks(synth, query, texts)
        max_prompt = get_biggest_prompt([parts.text_qa_template, parts.refine_template])
        chunks = [piece for chunk in compact for piece in parts.prompt_helper.repack(
            max_prompt, [chunk], llm=parts.llm, padding=parts.padding)]
        if len(chunks) != 1:
            log.info("teola: the context needs %d LLM calls (refine); this query's synthesis runs natively", len(chunks))
            return SKIPPED
        return _render(parts.llm, parts.text_qa_template.partial_format(query_str=query), context_str=chunks[0])

    return build_prompt


def _template_prefix_fn(llm: Any, template: Any) -> Callable[[str], PromptPrefix]:
    """query -> the part of a synthesis prompt before the context: the user's template rendered
    with a marker where the context goes, cut there by the engine."""

    def build_prefix(query: str) -> PromptPrefix:
        return PromptPrefix(_render(llm, template.partial_format(query_str=query), context_str=CONTEXT_MARK), CONTEXT_MARK)

    return build_prefix


def _compact_finish_fn(synth: CompactAndRefine) -> Callable[..., Any]:
    """(query, nodes, answer) -> the framework Response the native synthesizer returns."""
    parts = li.synthesizer_parts(synth)

    def finish(query: str, nodes: list[NodeWithScore], answer: Any) -> Any:
        if answer is SKIPPED:
            return synth.synthesize(query=query, nodes=nodes)
        text = li.parse_output(parts.llm, answer) or "Empty Response"
        return li.response(synth, text, list(nodes))

    return finish


def _tree_prompts_fn(synth: TreeSummarize) -> Callable[..., list[Prompt] | Any]:
    """(query, nodes) -> the prompts of tree_summarize's first level, one per repacked chunk.

    LlamaIndex sends them one after another (use_async=False); they are independent, so Teola
    sends them together. ``SKIPPED`` when there are no nodes.
    """
    parts = li.synthesizer_parts(synth)

    def build_prompts(query: str, nodes: list[NodeWithScore]) -> list[Prompt] | Any:
        if not nodes:
            return SKIPPED
        template = parts.summary_template.partial_format(query_str=query)
        texts = [n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes]
        chunks = parts.prompt_helper.repack(template, text_chunks=texts, llm=parts.llm)
        return [_render(parts.llm, template, context_str=chunk) for chunk in chunks]

    return build_prompts


def _tree_finish_fn(synth: TreeSummarize) -> Callable[..., Any]:
    """(query, nodes, first-level answers) -> the Response: one answer is the response; several are
    summarized further by the native tree_summarize, exactly as its recursion would."""
    parts = li.synthesizer_parts(synth)

    def finish(query: str, nodes: list[NodeWithScore], answer: Any) -> Any:
        if answer is SKIPPED:
            return synth.synthesize(query=query, nodes=nodes)
        summaries = [li.parse_output(parts.llm, text) for text in answer]
        text = summaries[0] if len(summaries) == 1 else synth.get_response(query_str=query, text_chunks=summaries)
        return li.response(synth, text, list(nodes))

    return finish
