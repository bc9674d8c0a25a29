"""The LlamaIndex demo apps, built the way a LlamaIndex user builds them, on Teola-backed engines."""

from __future__ import annotations

from typing import Any, Literal, get_args

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.response.schema import StreamingResponse
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine.types import BaseChatEngine
from llama_index.core.llms import LLM
from llama_index.core.indices.utils import default_parse_choice_select_answer_fn
from llama_index.core.postprocessor import LLMRerank, SimilarityPostprocessor
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.query_engine import (CitationQueryEngine, RetrieverQueryEngine, RouterQueryEngine,
                                           SubQuestionQueryEngine)
from llama_index.core.question_gen import LLMQuestionGenerator
from llama_index.core.retrievers import BaseRetriever, QueryFusionRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.selectors import LLMSingleSelector
from llama_index.core.tools import QueryEngineTool, ToolMetadata
from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

from teola_integrations.tools.data import Chunk, load_corpus
from teola_integrations.llama_index import TeolaEmbedding, TeolaLLM, guided_llm, selection_schema, sub_question_schema
from teola_integrations.tools.search_service import web_search


def build_index(chunks: list[Chunk], embed_model: BaseEmbedding,
                store: Literal["simple", "faiss"] = "simple") -> VectorStoreIndex:
    """A VectorStoreIndex over the chunks, in the default in-memory store or a faiss store."""
    nodes = [TextNode(id_=c.id, text=c.text, metadata={"topic": c.topic}) for c in chunks]
    if store == "faiss":
        import faiss
        from llama_index.vector_stores.faiss import FaissVectorStore

        dim = len(embed_model.get_text_embedding("dimension probe"))
        storage = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index=faiss.IndexFlatIP(dim)))
        return VectorStoreIndex(nodes, embed_model=embed_model, storage_context=storage, show_progress=True)
    return VectorStoreIndex(nodes, embed_model=embed_model, show_progress=True)


def lenient_choice_parse(answer: str, num_choices: int, raise_error: bool = False) -> tuple[list[int], list[float]]:
    """LLMRerank's own parse, keeping every candidate in its fused order when the answer has no
    parsable line: a 135M model rarely follows the choice-select format."""
    numbers, relevances = default_parse_choice_select_answer_fn(answer, num_choices)
    if numbers and len(numbers) == len(relevances):
        return numbers, relevances
    return list(range(1, num_choices + 1)), [float(num_choices - i) for i in range(num_choices)]


class WebSearchRetriever(BaseRetriever):
    """Retrieves from a web-search API (here the loopback ``SearchService``): the retriever a LlamaIndex
    user writes around a search API; each hit becomes a node with its snippet as text."""

    def __init__(self, url: str, k: int = 3) -> None:
        super().__init__()
        self.url, self.k = url, k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [NodeWithScore(node=TextNode(id_=hit.id, text=hit.snippet, metadata={"title": hit.title}), score=hit.score)
                for hit in web_search(self.url, query_bundle.query_str, self.k)]


# The sub-question app's tools: query engines over the corpus, as a user describes them to the generator.
SUB_QUESTION_TOOLS = (("statements", "Python's statements: what each statement does and when its clauses run"),
                      ("types", "Python's built-in types and the methods and operations they support"))

# The router app's candidates, as a user describes them to the selector (LlamaIndex's router guide pairs
# a "specific context" engine with a summarizing one).
ROUTER_TOOLS = (("facts", "Useful for a question about one specific statement, type or operation of Python: "
                          "answers from the few passages that cover it"),
                ("overview", "Useful for a broad question that compares several of Python's statements or types: "
                             "summarizes many passages"))

# The chat app's conversation so far: every question is asked as the next turn after it.
CHAT_HISTORY = (ChatMessage(role=MessageRole.USER, content="I am reading the Python language reference."),
                ChatMessage(role=MessageRole.ASSISTANT, content="Ask me about any of its statements or built-in types."))

# The cutoff app keeps the retrieved nodes at least this similar to the question (all-MiniLM-L6-v2's cosine:
# the demo questions' best chunk scores about 0.6-0.7, the next ones 0.35-0.6).
SIMILARITY_CUTOFF = 0.5

AppKind = Literal["search", "naive", "stream", "advanced", "refine", "tree", "simple", "accumulate", "subquestion",
                  "citation", "chat", "chat_question", "chat_simple", "router", "filtered", "cutoff"]
APP_KINDS: tuple[AppKind, ...] = get_args(AppKind)


def build_rag_app(top_k: int = 3, max_tokens: int = 64, store: Literal["simple", "faiss"] = "simple",
                  corpus_limit: int | None = None, kind: AppKind = "naive") -> BaseQueryEngine | BaseChatEngine:
    """A RAG app of ``kind`` (see ``build_app``) over the demo corpus, on Teola-backed engines."""
    index = build_index(load_corpus(corpus_limit), TeolaEmbedding(), store)
    return build_app(index, TeolaLLM(max_tokens=max_tokens), kind, top_k)


def build_app(index: VectorStoreIndex, llm: LLM, kind: AppKind = "naive", top_k: int = 3,
              search_url: str | None = None, hand_tuned: bool = False) -> BaseQueryEngine | BaseChatEngine:
    """A query engine (or, ``chat``, a chat engine) over ``index``, as a LlamaIndex user writes it:

    - search: search-engine-empowered generation: top-k hits of the web-search API at ``search_url``,
      compact synthesis over their snippets;
    - naive: retrieve top-k, compact synthesis;
    - filtered: naive, its retriever filtered by metadata (every topic but the general "types" chapter);
    - cutoff: retrieve 2k, keep the nodes whose similarity reaches ``SIMILARITY_CUTOFF``
      (``SimilarityPostprocessor``), compact synthesis;
    - stream: naive, streaming its answer (``streaming=True``; ``ask`` reads every token);
    - advanced: LlamaIndex's query fusion (the LLM writes 3 more queries, each retrieved top-k,
      reciprocal-rank fusion), LLM reranking of the fused top 2k, compact synthesis over the top k;
    - refine: retrieve top-k, refine synthesis (one LLM call per chunk, each on the last answer);
    - tree: retrieve 2k, tree_summarize synthesis (the chunks, repacked to fill the context window,
      are summarized one by one, then the summaries are summarized);
    - simple: retrieve top-k, simple_summarize synthesis (one LLM call over the texts, truncated to fit);
    - accumulate: retrieve top-k, accumulate synthesis (one LLM call per text, the answers numbered and joined);
    - subquestion: LlamaIndex's SubQuestionQueryEngine over two tools (each a top-k query engine on the
      index): the LLM writes 1-3 sub-questions as JSON (guided decoding to LlamaIndex's own schema, see
      ``sub_question_schema``), each is answered by its tool, then the answer is synthesized over them;
    - citation: LlamaIndex's CitationQueryEngine: retrieve top-k, cut the nodes into numbered "Source N:"
      chunks, compact synthesis with its citation templates;
    - router: LlamaIndex's RouterQueryEngine over two candidates (``ROUTER_TOOLS``): a top-k engine
      with compact synthesis and a 2k one with tree_summarize; its LLMSingleSelector's answer is held to
      the JSON its output parser reads by guided decoding (``selection_schema``), then the one engine
      it chooses answers;
    - chat: ``index.as_chat_engine()`` (condense-plus-context): each question is a turn after
      ``CHAT_HISTORY`` (see ``ask``): the LLM condenses the conversation and the question into a
      standalone question, which is retrieved top-k; the answer is synthesized with the conversation;
    - chat_question: ``index.as_chat_engine(chat_mode="condense_question")``: each question a turn after
      ``CHAT_HISTORY``: the LLM condenses the conversation and the question into a standalone question,
      which a top-k query engine (compact synthesis) answers;
    - chat_simple: ``index.as_chat_engine(chat_mode="simple")`` (a ``SimpleChatEngine``, no retrieval):
      each question a turn after ``CHAT_HISTORY``, answered by one chat call on the conversation.

    ``hand_tuned`` asks for LlamaIndex's own parallel form where it has one (see ``has_hand_tuned_form``):
    query fusion with ``use_async=True`` (the generated queries retrieved concurrently), tree_summarize
    and accumulate with ``use_async=True`` (the chunk summaries or answers written concurrently), the
    sub-question engine with ``use_async=True`` (the sub-questions answered concurrently).
    """
    if kind == "search":
        if search_url is None:
            raise ValueError("the search app needs search_url: start a teola_integrations.tools.search_service.SearchService")
        return RetrieverQueryEngine.from_args(WebSearchRetriever(search_url, top_k), llm=llm)
    if kind == "naive":
        return index.as_query_engine(llm=llm, similarity_top_k=top_k)
    if kind == "filtered":
        not_types = MetadataFilter(key="topic", value="types", operator=FilterOperator.NE)
        return index.as_query_engine(llm=llm, similarity_top_k=top_k, filters=MetadataFilters(filters=[not_types]))
    if kind == "cutoff":
        return index.as_query_engine(llm=llm, similarity_top_k=2 * top_k,
                                     node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=SIMILARITY_CUTOFF)])
    if kind == "stream":
        return index.as_query_engine(llm=llm, similarity_top_k=top_k, streaming=True)
    if kind == "refine":
        return index.as_query_engine(llm=llm, similarity_top_k=top_k, response_mode="refine")
    if kind == "simple":
        return index.as_query_engine(llm=llm, similarity_top_k=top_k, response_mode="simple_summarize")
    if kind == "accumulate":
        return index.as_query_engine(llm=llm, similarity_top_k=top_k, response_mode="accumulate", use_async=hand_tuned)
    if kind == "tree":
        return index.as_query_engine(llm=llm, similarity_top_k=2 * top_k, response_mode="tree_summarize",
                                     use_async=hand_tuned)
    if kind == "chat":
        return index.as_chat_engine(llm=llm, similarity_top_k=top_k)
    if kind == "chat_question":
        return index.as_chat_engine(chat_mode="condense_question", llm=llm, similarity_top_k=top_k)
    if kind == "chat_simple":
        return index.as_chat_engine(chat_mode="simple", llm=llm)
    if kind == "citation":
        return CitationQueryEngine.from_args(index, llm=llm, similarity_top_k=top_k)
    if kind == "subquestion":
        tools = [QueryEngineTool(query_engine=index.as_query_engine(llm=llm, similarity_top_k=top_k),
                                 metadata=ToolMetadata(name=name, description=description))
                 for name, description in SUB_QUESTION_TOOLS]
        schema = sub_question_schema([name for name, _ in SUB_QUESTION_TOOLS])
        return SubQuestionQueryEngine.from_defaults(
            query_engine_tools=tools, question_gen=LLMQuestionGenerator.from_defaults(llm=guided_llm(llm, schema)),
            llm=llm, use_async=hand_tuned)
    if kind == "router":
        candidates = (index.as_query_engine(llm=llm, similarity_top_k=top_k),
                      index.as_query_engine(llm=llm, similarity_top_k=2 * top_k, response_mode="tree_summarize"))
        tools = [QueryEngineTool(query_engine=engine, metadata=ToolMetadata(name=name, description=description))
                 for engine, (name, description) in zip(candidates, ROUTER_TOOLS)]
        selector = LLMSingleSelector.from_defaults(llm=guided_llm(llm, selection_schema(len(tools)), max_tokens=64))
        return RouterQueryEngine(selector, tools, llm=llm)
    fusion = QueryFusionRetriever([index.as_retriever(similarity_top_k=top_k)], llm=llm, num_queries=4,
                                  mode="reciprocal_rerank", similarity_top_k=2 * top_k, use_async=hand_tuned)
    rerank = LLMRerank(llm=llm, top_n=top_k, choice_batch_size=top_k, parse_choice_select_answer_fn=lenient_choice_parse)
    return RetrieverQueryEngine.from_args(fusion, llm=llm, node_postprocessors=[rerank])


def ask(app: Any, question: str) -> Any:
    """Ask a demo app ``question``: a query engine's query (a streamed answer read to its last token),
    a chat engine's next turn after ``CHAT_HISTORY``."""
    if isinstance(app, BaseChatEngine):
        return app.chat(question, chat_history=list(CHAT_HISTORY))
    response = app.query(question)
    return response.get_response() if isinstance(response, StreamingResponse) else response


def has_hand_tuned_form(kind: AppKind) -> bool:
    """Whether LlamaIndex offers a parallel form of ``kind`` (else the app as written is its best form)."""
    return kind in ("advanced", "tree", "accumulate", "subquestion")
