"""The demo apps built on the user's own classes, as users run local models: LlamaIndex's
``OpenAILike`` and LangChain's ``ChatOpenAI`` on a vLLM OpenAI-compatible server, LlamaIndex's
``HuggingFaceEmbedding`` (all-MiniLM-L6-v2 from its package folder) and the default vector store.
Nothing in them is a Teola class: ``optimize()`` reads them as they are."""

from __future__ import annotations

from typing import Any

from llama_index.core.query_engine import RetrieverQueryEngine

from teola.runtime.models import resolve_embedding
from teola_integrations.tools.data import load_corpus
from teola_integrations.tools.demo_app import AppKind, build_app, build_index
from teola_integrations.tools.vllm_server import SERVED_NAME

API_KEY = "not-needed"  # vLLM's server takes any key unless started with --api-key; the clients want one


def openai_like(base_url: str, max_tokens: int = 64, chat: bool = True) -> Any:
    """LlamaIndex's client of an OpenAI-compatible server, greedy, as a vLLM user configures it."""
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(model=SERVED_NAME, api_base=base_url, api_key=API_KEY, temperature=0.0, max_tokens=max_tokens,
                      is_chat_model=chat, context_window=2048)


def hf_embedding() -> Any:
    """LlamaIndex's sentence-transformers embedding, loading the packaged all-MiniLM-L6-v2."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=resolve_embedding())


def chat_openai(base_url: str, max_tokens: int = 64) -> Any:
    """LangChain's chat client of an OpenAI-compatible server, greedy."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=SERVED_NAME, base_url=base_url, api_key=API_KEY, temperature=0.0, max_tokens=max_tokens)


def vllm_openai(base_url: str, max_tokens: int = 64) -> Any:
    """langchain-community's ``VLLMOpenAI``, the completion client LangChain's vLLM page shows, greedy."""
    from langchain_community.llms import VLLMOpenAI

    return VLLMOpenAI(model_name=SERVED_NAME, openai_api_base=base_url, openai_api_key=API_KEY, temperature=0.0,
                      max_tokens=max_tokens)


def build_user_rag_app(base_url: str, kind: AppKind = "naive", top_k: int = 3, max_tokens: int = 64,
                       corpus_limit: int | None = None) -> RetrieverQueryEngine:
    """A LlamaIndex RAG app of ``kind`` (see ``demo_app.build_app``) on the user's own classes."""
    index = build_index(load_corpus(corpus_limit), hf_embedding())
    return build_app(index, openai_like(base_url, max_tokens), kind, top_k)


def build_user_store(corpus_limit: int | None = None) -> Any:
    """The demo corpus in LangChain's ``InMemoryVectorStore`` with ``HuggingFaceEmbeddings``."""
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_huggingface import HuggingFaceEmbeddings

    docs = [Document(id=c.id, page_content=c.text, metadata={"topic": c.topic}) for c in load_corpus(corpus_limit)]
    return InMemoryVectorStore.from_documents(docs, HuggingFaceEmbeddings(model_name=resolve_embedding()))
