"""Every private LlamaIndex name Teola touches, in one place, checked against the installed version.

The LlamaIndex adapter reads components through their private attributes and reuses their private
helpers (so the optimized run builds the very prompts, nodes and responses the native run does).
Nothing else in Teola touches a private LlamaIndex name. ``PRIVATE_NAMES`` lists them all, by the
class that has them (``PRIVATE_FUNCTIONS`` the module functions); ``moved_names`` says which ones a given
set of components lacks (``moved_functions``: which functions moved), and the
tests build one component of each class and fail, naming the name, when an upgrade moves one.
``TESTED`` is the llama-index-core release line these names were read from: another one gets one
warning the first time an app is read.
"""

from __future__ import annotations

import copy
import inspect
import logging
import types
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import llama_index.core
from llama_index.core.async_utils import run_jobs
from llama_index.core.response.utils import aget_response_text, get_response_text
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.selectors import llm_selectors
from llama_index.core.vector_stores.types import VectorStoreQueryResult

log = logging.getLogger(__name__)

TESTED = "0.14"

PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "TransformQueryEngine": ("_query_transform", "_query_engine"),
    "RetrieverQueryEngine": ("_node_postprocessors", "_response_synthesizer"),
    "HyDEQueryTransform": ("_llm", "_hyde_prompt", "_include_original"),
    "VectorIndexRetriever": ("_vector_store", "_node_ids", "_embed_model", "_similarity_top_k",
                             "_vector_store_query_mode", "_filters", "_doc_ids", "_kwargs", "_docstore",
                             "_determine_nodes_to_fetch", "_insert_fetched_nodes_into_query_result",
                             "_convert_nodes_to_scored_nodes", "_handle_recursive_retrieval"),
    "QueryFusionRetriever": ("_retrievers", "_llm", "_reciprocal_rerank_fusion", "_relative_score_fusion",
                             "_simple_fusion", "_handle_recursive_retrieval"),
    "LLMRerank": ("_get_predict_kwargs", "_get_node_batches", "_parse_raw_response"),
    "Refine": ("_llm", "_text_qa_template", "_refine_template", "_prompt_helper", "_response_padding_size",
               "_streaming", "_output_cls", "_structured_answer_filtering", "_multimodal", "_program_factory",
               "_update_response", "_aupdate_response", "_prepare_response_output"),
    "CompactAndRefine": ("_make_compact_text_chunks",),
    "BaseSynthesizer": ("_callback_manager",),
    "TreeSummarize": ("_llm", "_summary_template", "_prompt_helper", "_streaming", "_output_cls", "_multimodal",
                      "_prepare_response_output"),
    "SimpleSummarize": ("_llm", "_text_qa_template", "_prompt_helper", "_streaming", "_prepare_response_output"),
    "Accumulate": ("_llm", "_text_qa_template", "_prompt_helper", "_streaming", "_output_cls", "_multimodal",
                   "_format_response", "_prepare_response_output"),
    "SubQuestionQueryEngine": ("_question_gen", "_metadatas", "_query_engines", "_response_synthesizer", "_verbose",
                               "_query_subq", "_aquery_subq", "_construct_node"),
    "CitationQueryEngine": ("_node_postprocessors", "_response_synthesizer", "_multimodal", "_create_citation_nodes"),
    "CondensePlusContextChatEngine": ("_retriever", "_llm", "_memory", "_node_postprocessors",
                                      "_condense_prompt_template", "_skip_condense", "_verbose",
                                      "_get_response_synthesizer"),
    "ContextChatEngine": ("_retriever", "_llm", "_memory", "_node_postprocessors", "_get_response_synthesizer"),
    "CondenseQuestionChatEngine": ("_query_engine", "_condense_question_prompt", "_memory", "_llm", "_verbose"),
    "SimpleChatEngine": ("_llm", "_memory", "_prefix_messages"),
    "RouterQueryEngine": ("_selector", "_query_engines", "_metadatas", "_summarizer", "_verbose"),
    "LLMSingleSelector": ("_llm", "_prompt"),
    "LLMQuestionGenerator": ("_llm", "_prompt"),
    "LLMMultiSelector": ("_llm", "_prompt", "_max_outputs"),
    "LLM": ("_parse_output", "_get_messages", "_get_prompt"),
    "FaissVectorStore": ("_faiss_index",),
    "OpenAI": ("_get_model_kwargs",),
    "HuggingFaceEmbedding": ("_embed",),
}


PRIVATE_FUNCTIONS: dict[types.ModuleType, tuple[str, ...]] = {
    llm_selectors: ("_build_choices_text", "_structured_output_to_selector_result"),
}


def moved_functions() -> list[str]:
    """``module._name`` for every private function of ``PRIVATE_FUNCTIONS`` its module no longer has."""
    return [f"{module.__name__}.{name}" for module, names in PRIVATE_FUNCTIONS.items() for name in names
            if not callable(getattr(module, name, None))]


def moved_names(components: Iterable[Any]) -> list[str]:
    """``Class._name`` for every name of ``PRIVATE_NAMES`` one of ``components`` (of that class, or
    for ``LLM`` any LLM) does not have: what an upgrade moved."""
    missing = []
    for component in components:
        kinds = [c.__name__ for c in type(component).__mro__]
        for kind, names in PRIVATE_NAMES.items():
            if kind in kinds:
                missing += [f"{kind}.{name}" for name in names if not hasattr(component, name)]
    return missing


_warned = False


def check_version() -> None:
    """Warn once if the installed llama-index-core is not the release line ``PRIVATE_NAMES`` was read from."""
    global _warned
    version = llama_index.core.__version__
    if not _warned and not version.startswith(f"{TESTED}."):
        _warned = True
        log.warning("teola: llama-index-core %s is not %s.x, the release Teola's LlamaIndex adapter was checked "
                    "against; if an app fails to read, pin llama-index-core~=%s.0", version, TESTED, TESTED)


def request_params(llm: Any) -> dict[str, Any]:
    """The parameters an OpenAI (or OpenAILike) LLM puts in every request body besides the prompt."""
    return dict(llm._get_model_kwargs())


def query_embeddings(model: Any, queries: list[str]) -> list[list[float]]:
    """The query embeddings of ``queries`` as ``model.get_query_embedding`` computes each: in one batch
    for a HuggingFaceEmbedding (its own encode, with its query prompt), one by one otherwise."""
    if any(c.__name__ == "HuggingFaceEmbedding" for c in type(model).__mro__):
        return model._embed(queries, prompt_name="query")
    return [model.get_query_embedding(query) for query in queries]


def transform_parts(engine: Any) -> tuple[Any, Any]:
    """A TransformQueryEngine's query transform and the query engine it wraps."""
    return engine._query_transform, engine._query_engine


def postprocessors(engine: Any) -> list[Any]:
    """A RetrieverQueryEngine's node postprocessors, in order."""
    return list(engine._node_postprocessors)


def synthesizer(engine: Any) -> Any:
    """A RetrieverQueryEngine's response synthesizer."""
    return engine._response_synthesizer


def citation_nodes(engine: Any, nodes: list[NodeWithScore]) -> list[NodeWithScore]:
    """A CitationQueryEngine's numbered citation chunks ("Source N:") of ``nodes``, as it makes them."""
    return engine._create_citation_nodes(nodes)


def is_multimodal_citation(engine: Any) -> bool:
    """Whether a CitationQueryEngine cites images and other media blocks too."""
    return bool(engine._multimodal)


@dataclass(frozen=True)
class SubQuestionParts:
    """What Teola runs of a SubQuestionQueryEngine: its question generator, its tools' metadata and
    query engines (by tool name), its synthesizer, whether it prints, how it answers one sub-question
    (``answer``/``aanswer``: its callback event, its tool's query, a failure logged and None) and the
    node a sub-answer becomes."""

    question_gen: Any
    metadatas: list[Any]
    engines: dict[str, Any]
    synthesizer: Any
    verbose: bool
    answer: Any
    aanswer: Any
    node_of: Any


def sub_question_parts(engine: Any) -> SubQuestionParts:
    """A SubQuestionQueryEngine's parts."""
    return SubQuestionParts(engine._question_gen, engine._metadatas, dict(engine._query_engines),
                            engine._response_synthesizer, engine._verbose, engine._query_subq, engine._aquery_subq,
                            engine._construct_node)


def question_generator_parts(generator: Any) -> tuple[Any, Any]:
    """An LLMQuestionGenerator's LLM and prompt (with its output parser)."""
    return generator._llm, generator._prompt


@dataclass(frozen=True)
class RouterParts:
    """What Teola runs of a RouterQueryEngine: its selector, its candidate query engines and their
    metadata (what the selector chooses from), the summarizer that combines several answers, and
    whether it prints its choice."""

    selector: Any
    engines: list[Any]
    metadatas: list[Any]
    summarizer: Any
    verbose: bool


def router_parts(engine: Any) -> RouterParts:
    """A RouterQueryEngine's parts."""
    return RouterParts(engine._selector, list(engine._query_engines), list(engine._metadatas), engine._summarizer,
                       engine._verbose)


@dataclass(frozen=True)
class SelectorParts:
    """What an LLM selector asks its LLM: the prompt (with its output parser) and its arguments
    besides the query (``num_choices``, ``context_list``, a multi selector's ``max_outputs``)."""

    llm: Any
    prompt: Any
    arguments: dict[str, Any]


def selector_parts(selector: Any, choices: Sequence[Any]) -> SelectorParts:
    """An LLMSingleSelector's or LLMMultiSelector's parts, for choosing among ``choices`` (tool metadata)."""
    arguments: dict[str, Any] = {"num_choices": len(choices)}
    if hasattr(selector, "_max_outputs"):
        arguments["max_outputs"] = selector._max_outputs or len(choices)
    arguments["context_list"] = llm_selectors._build_choices_text(choices)
    return SelectorParts(selector._llm, selector._prompt, arguments)


def selector_result(parsed: Any) -> Any:
    """The SelectorResult an LLM selector makes of its output parser's structured output."""
    return llm_selectors._structured_output_to_selector_result(parsed)


@dataclass(frozen=True)
class ChatEngineParts:
    """What Teola runs of a context chat engine (condense-plus-context or context): its retriever,
    LLM, memory and node postprocessors, the synthesizer it builds for a turn's chat history
    (``synthesizer_for``), and, where it condenses the conversation into a standalone question
    (``condense_template`` not None), whether it skips that and whether it prints the question."""

    retriever: Any
    llm: Any
    memory: Any
    postprocessors: list[Any]
    synthesizer_for: Any
    condense_template: Any = None
    skip_condense: bool = False
    verbose: bool = False


def chat_engine_parts(engine: Any) -> ChatEngineParts:
    """A CondensePlusContextChatEngine's or ContextChatEngine's parts."""
    parts = ChatEngineParts(engine._retriever, engine._llm, engine._memory, list(engine._node_postprocessors),
                            engine._get_response_synthesizer)
    if not hasattr(engine, "_condense_prompt_template"):
        return parts
    return replace(parts, condense_template=engine._condense_prompt_template, skip_condense=engine._skip_condense,
                   verbose=engine._verbose)


@dataclass(frozen=True)
class CondenseQuestionParts:
    """What Teola runs of a CondenseQuestionChatEngine: the query engine it asks, the prompt that
    condenses the conversation into its question, its memory and LLM, whether it prints the question."""

    query_engine: Any
    condense_prompt: Any
    memory: Any
    llm: Any
    verbose: bool


def condense_question_parts(engine: Any) -> CondenseQuestionParts:
    """A CondenseQuestionChatEngine's parts."""
    return CondenseQuestionParts(engine._query_engine, engine._condense_question_prompt, engine._memory, engine._llm,
                                 engine._verbose)


def stream_why_not(synth: Any) -> str | None:
    """Why a streaming synthesizer's answer cannot stream from Teola's engines (None: it can): its
    LLM's stream() raises where an output parser is set, so the native synthesizer answers."""
    parts = synthesizer_parts(synth)
    parsers = [parts.llm.output_parser, *(getattr(t, "output_parser", None)
                                          for t in (parts.text_qa_template, parts.refine_template) if t is not None)]
    return "an output parser on a streamed answer (LlamaIndex's stream() refuses one)" if any(parsers) else None


def synthesizer_streams(synth: Any) -> bool:
    """Whether a synthesizer answers with a stream of tokens (``streaming=True``)."""
    return getattr(synth, "_streaming", False)


def streams_its_answers(query_engine: Any) -> bool:
    """Whether a RetrieverQueryEngine's synthesizer streams (a condense-question turn turns that off while
    it asks the engine, so Teola runs such a turn whole)."""
    return synthesizer_streams(getattr(query_engine, "_response_synthesizer", None))


def streaming_twin(query_engine: Any) -> Any:
    """A RetrieverQueryEngine as a condense-question turn's ``stream_chat`` asks it: a shallow copy whose
    synthesizer (a shallow copy of the engine's own) streams. The native turn sets ``_streaming`` on the
    engine's own synthesizer while it asks; Teola reads the copy instead, once, and leaves the engine as it is."""
    synth = copy.copy(query_engine._response_synthesizer)
    synth._streaming = True
    twin = copy.copy(query_engine)
    twin._response_synthesizer = synth
    return twin


@dataclass(frozen=True)
class SimpleChatParts:
    """What Teola runs of a SimpleChatEngine: its LLM, memory and the messages every turn starts with."""

    llm: Any
    memory: Any
    prefix_messages: list[Any]


def simple_chat_parts(engine: Any) -> SimpleChatParts:
    """A SimpleChatEngine's parts."""
    return SimpleChatParts(engine._llm, engine._memory, list(engine._prefix_messages))


@dataclass(frozen=True)
class HyDEParts:
    """What HyDEQueryTransform asks its LLM, and whether the query is embedded beside its answer."""

    llm: Any
    prompt: Any
    include_original: bool


def hyde_parts(hyde: Any) -> HyDEParts:
    """A HyDEQueryTransform's LLM, prompt and ``include_original``."""
    return HyDEParts(hyde._llm, hyde._hyde_prompt, hyde._include_original)


@dataclass(frozen=True)
class VectorRetrieverParts:
    """What a VectorIndexRetriever searches and how it would query its store."""

    store: Any
    node_ids: Sequence[str] | None
    embed_model: Any
    top_k: int
    query_mode: Any
    filters: Any  # its metadata filters (None: none)
    restricted: bool  # doc ids or store kwargs narrow its query


def vector_retriever(retriever: Any) -> VectorRetrieverParts:
    """A VectorIndexRetriever's store, node ids, embedding model, top k, query mode, metadata filters
    and other restrictions."""
    return VectorRetrieverParts(retriever._vector_store, retriever._node_ids, retriever._embed_model,
                                retriever._similarity_top_k, retriever._vector_store_query_mode, retriever._filters,
                                bool(retriever._doc_ids) or bool(retriever._kwargs))


def scored_nodes(retriever: Any, ids: list[str], similarities: list[float], query: str) -> list[NodeWithScore]:
    """Search hits as the nodes a VectorIndexRetriever returns for them: fetched from its docstore
    where the store holds no text, scored, and recursive retrieval applied."""
    result = VectorStoreQueryResult(ids=ids, similarities=similarities)
    to_fetch = retriever._determine_nodes_to_fetch(result)
    if to_fetch:
        fetched = retriever._docstore.get_nodes(node_ids=to_fetch, raise_error=False)
        result.nodes = retriever._insert_fetched_nodes_into_query_result(result, fetched)
    nodes = retriever._convert_nodes_to_scored_nodes(result)
    return retriever._handle_recursive_retrieval(QueryBundle(query), nodes)


def fusion_retrievers(retriever: Any) -> list[Any]:
    """A QueryFusionRetriever's retrievers."""
    return list(retriever._retrievers)


def fusion_llm(retriever: Any) -> Any:
    """The LLM a QueryFusionRetriever writes its queries with."""
    return retriever._llm


def fuse(retriever: Any, mode: Any, results: dict[tuple[str, int], list[NodeWithScore]]) -> list[NodeWithScore]:
    """The per-(query, retriever) results fused by the QueryFusionRetriever's own fusion for ``mode``."""
    from llama_index.core.retrievers.fusion_retriever import FUSION_MODES

    if mode == FUSION_MODES.RECIPROCAL_RANK:
        return retriever._reciprocal_rerank_fusion(results)
    if mode == FUSION_MODES.RELATIVE_SCORE:
        return retriever._relative_score_fusion(results)
    if mode == FUSION_MODES.DIST_BASED_SCORE:
        return retriever._relative_score_fusion(results, dist_based=True)
    return retriever._simple_fusion(results)


def recursive_retrieval(retriever: Any, query: str, nodes: list[NodeWithScore]) -> list[NodeWithScore]:
    """``nodes`` after the retriever's own recursive retrieval (index nodes followed)."""
    return retriever._handle_recursive_retrieval(QueryBundle(query), nodes)


def rerank_kwargs(rerank: Any, nodes: list[Any], query: str) -> dict[str, Any]:
    """The choice-select prompt's variables LLMRerank formats for ``nodes``."""
    return rerank._get_predict_kwargs(nodes, query)


def rerank_batches(rerank: Any, nodes: list[NodeWithScore]) -> list[list[NodeWithScore]]:
    """The batches of candidates LLMRerank asks its LLM about, one call each."""
    return rerank._get_node_batches(nodes)


def rerank_choices(rerank: Any, raw: str, batch: list[NodeWithScore]) -> list[NodeWithScore]:
    """LLMRerank's reading of one answer against its batch of candidates."""
    return rerank._parse_raw_response(raw, batch)


def run_jobs_worker() -> tuple[str, tuple[str, ...]]:
    """The qualified name and parameters of the span ``run_jobs`` opens around each job: a function
    local to it, read off its code (LLMRerank's async batches run through it)."""
    code = inspect.unwrap(run_jobs).__code__
    for const in code.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == "worker":
            return f"{run_jobs.__qualname__}.<locals>.worker", const.co_varnames[:const.co_argcount]
    raise LookupError("llama_index.core.async_utils.run_jobs has no local worker any more: Teola's LlamaIndex "
                      f"adapter was checked against {TESTED}.x; pin llama-index-core~={TESTED}.0")


def parse_output(llm: Any, text: str) -> str:
    """The LLM's own post-processing of its output (its output parser, if any)."""
    return llm._parse_output(text)


def render(llm: Any, template: Any, /, **variables: Any) -> tuple[list[Any] | None, str | None]:
    """A template with its variables, as the LLM's predict() would send it: (messages, None) for a
    chat model, (None, text) for a completion model. The variables may include any name (accumulate
    passes one called ``template``), as predict() takes them."""
    if llm.metadata.is_chat_model:
        return llm._get_messages(template, **variables), None
    return None, llm._get_prompt(template, **variables)


@dataclass(frozen=True)
class SynthesizerParts:
    """A compact, tree_summarize, simple_summarize or accumulate synthesizer's LLM, templates, prompt
    helper and modes."""

    llm: Any
    text_qa_template: Any
    refine_template: Any
    summary_template: Any
    prompt_helper: Any
    padding: int
    plain: bool  # no structured output, no answer filtering, not multimodal
    streaming: bool  # its answer is a generator of tokens


def synthesizer_parts(synth: Any) -> SynthesizerParts:
    """What Teola reads of a CompactAndRefine, TreeSummarize, SimpleSummarize or Accumulate synthesizer."""
    plain = not (getattr(synth, "_output_cls", None) is not None
                 or getattr(synth, "_structured_answer_filtering", False) or getattr(synth, "_multimodal", False))
    return SynthesizerParts(synth._llm, getattr(synth, "_text_qa_template", None), getattr(synth, "_refine_template", None),
                            getattr(synth, "_summary_template", None), synth._prompt_helper,
                            getattr(synth, "_response_padding_size", 0), plain, synth._streaming)


def compact_chunks(synth: Any, query: str, texts: list[str]) -> list[str]:
    """The text chunks compact mode packs the context into."""
    return synth._make_compact_text_chunks(query, texts)


def refine_answer(synth: Any, template: Any, variables: dict[str, Any], last: bool = False) -> Any:
    """One call of a refine loop (compact or refine mode), as the loop makes it: through the
    synthesizer's refine program (whose span wraps the LLM's ``predict``, or ``stream`` where it
    streams); None where the loop keeps its answer (an empty one). A streaming loop's ``last`` call
    is left a generator, unread, as the loop returns it; the others' text is read, as the loop reads
    it before its next call."""
    answer = synth._update_response(synth._program_factory(template), variables, {})
    return answer if last or not inspect.isgenerator(answer) else get_response_text(answer)


async def arefine_answer(synth: Any, template: Any, variables: dict[str, Any], last: bool = False) -> Any:
    """``refine_answer``'s async twin, as the async loop makes the call (an async generator where it streams)."""
    answer = await synth._aupdate_response(synth._program_factory(template), variables, {})
    return answer if last or not inspect.isasyncgen(answer) else await aget_response_text(answer)


def accumulated(synth: Any, answers: list[str]) -> str:
    """Accumulate's answer from its calls' answers (each numbered, joined by its default separator)."""
    return synth._format_response(answers, ACCUMULATE_SEPARATOR)


# The separator Accumulate.get_response joins its answers with, unless told otherwise.
ACCUMULATE_SEPARATOR = "\n---------------------\n"


def response(synth: Any, text: Any, nodes: list[NodeWithScore]) -> Any:
    """The Response the synthesizer returns for ``text`` and ``nodes``."""
    return synth._prepare_response_output(text, nodes)


def faiss_index(store: Any) -> Any:
    """A FaissVectorStore's faiss index."""
    return store._faiss_index


def is_faiss_store(store: Any) -> bool:
    """Whether ``store`` is llama-index-vector-stores-faiss's FaissVectorStore."""
    return type(store).__name__ == "FaissVectorStore" and hasattr(store, "_faiss_index")


def callback_parent() -> str:
    """The legacy callback event that events started here go under (LlamaIndex's trace stack)."""
    from llama_index.core.callbacks.base import BASE_TRACE_EVENT, global_stack_trace

    stack = global_stack_trace.get()
    return stack[-1] if stack else BASE_TRACE_EVENT


def enter_callback_event(event_id: str) -> None:
    """Make legacy callback events started from here on (this context) go under ``event_id``."""
    from llama_index.core.callbacks.base import global_stack_trace

    global_stack_trace.set([*global_stack_trace.get(), event_id])


def synthesizer_callbacks(synth: Any) -> Any:
    """The callback manager a synthesizer's events go through (it holds it privately)."""
    return synth._callback_manager
