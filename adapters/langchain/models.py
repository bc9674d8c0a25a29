"""The chain's own chat models, LLMs, embeddings and vector stores as Teola engines.

Teola's own classes carry their engine (``teola_engine``, ``teola_sampling``, ``index_engine``).
The standard OpenAI clients (langchain-openai's ``ChatOpenAI`` and ``OpenAI``, langchain-community's
``VLLMOpenAI``) pointed at an
OpenAI-compatible server (vLLM's, usually) are read off their configuration and become an engine
on that server, sending what the client itself would send; reading a client never logs its API
key. The user's own ``Embeddings`` and ``InMemoryVectorStore`` become engines around the objects
themselves (query embeddings and search by vector, as the store's own similarity search does).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseLanguageModel
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import SecretStr

from teola.adapters.bindings import EngineBinding, LLMBinding, object_key
from teola.adapters.langchain.compat import request_params
from teola.optimizer.ops import EngineKind
from teola.runtime.engines.embedding import FunctionEmbeddingEngine
from teola.runtime.engines.openai_server import Secret, ServerEndpoint, request_sampling
from teola.runtime.engines.server_pool import endpoint_spec
from teola.runtime.engines.vector_index import FunctionSearchEngine
from teola.runtime.registry import EngineSpec

try:
    from langchain_openai.chat_models.base import BaseChatOpenAI
    from langchain_openai.llms.base import BaseOpenAI

    OPENAI_CLIENTS: tuple[type, ...] = (BaseChatOpenAI, BaseOpenAI)
except ImportError:  # langchain-openai is optional: without it no chain can use its clients
    OPENAI_CLIENTS = ()


def _openai_clients() -> tuple[type, ...]:
    """The OpenAI client classes Teola reads: langchain-openai's, and langchain-community's
    ``BaseOpenAI`` (``VLLMOpenAI``'s) where an app has loaded it (importing it here would cost every
    app its import time and its deprecation warning)."""
    community = sys.modules.get("langchain_community.llms.openai")
    return OPENAI_CLIENTS + ((community.BaseOpenAI,) if community is not None else ())


def model_why_not(model: Any) -> str | None:
    """Why ``model``'s calls cannot run on a Teola engine (None: they can)."""
    if not isinstance(model, BaseLanguageModel):
        return f"{type(model).__name__} is not a LangChain chat model or LLM"
    if hasattr(model, "teola_engine") and hasattr(model, "teola_sampling"):
        return None
    if isinstance(model, _openai_clients()):
        if getattr(model, "use_responses_api", None):
            return "it uses the Responses API (Teola sends chat and completions requests)"
        if (request_params(model).get("n") or 1) != 1:
            return "it asks for several choices (n != 1)"
        return None
    return (f"{type(model).__name__} is not a model Teola serves (use teola_integrations.langchain.TeolaChatModel "
            "or TeolaLLM, or a ChatOpenAI/OpenAI/VLLMOpenAI client of an OpenAI-compatible server)")


def server_endpoint(model: Any) -> ServerEndpoint:
    """Where an OpenAI client sends its requests: its base URL (else ``$OPENAI_BASE_URL``, else
    OpenAI's), its key (langchain-community's holds it as plain text), headers, timeout and retries."""
    base_url = model.openai_api_base or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    key = model.openai_api_key
    key = key.get_secret_value() if isinstance(key, SecretStr) else key if isinstance(key, str) else None
    headers = tuple((name, Secret(str(value))) for name, value in (model.default_headers or {}).items())
    timeout = model.request_timeout
    return ServerEndpoint(base_url, model.model_name, Secret(key) if key else None, headers,
                          float(timeout) if isinstance(timeout, (int, float)) else 60.0,
                          2 if model.max_retries is None else int(model.max_retries))


def bind_model(model: Any) -> LLMBinding:
    """The engine and sampling of a model ``model_why_not`` accepts."""
    if hasattr(model, "teola_engine"):
        return LLMBinding(model.teola_engine, sampling=model.teola_sampling)
    spec = endpoint_spec(server_endpoint(model))
    return LLMBinding(spec.id, spec, request_sampling(request_params(model)))


def _query_embeddings(embeddings: Embeddings, queries: list[str]) -> list[list[float]]:
    return [embeddings.embed_query(query) for query in queries]


def bind_embeddings(embeddings: Any) -> EngineBinding:
    """The engine of an ``Embeddings``: a Teola class's own, or one around the object that embeds
    each query as the store's similarity search does (``embed_query``)."""
    if hasattr(embeddings, "teola_engine"):
        return EngineBinding(embeddings.teola_engine)
    build = functools.partial(FunctionEmbeddingEngine, functools.partial(_query_embeddings, embeddings),
                              "How does the with statement call a context manager's methods?")
    spec = EngineSpec(EngineKind.EMBEDDING, f"langchain:{type(embeddings).__name__}:{object_key(embeddings)}",
                      build=build, in_process=True)
    return EngineBinding(spec.id, spec)


def store_why_not(store: Any) -> str | None:
    """Why a vector store's similarity search cannot run on Teola's engines (None: it can)."""
    if hasattr(store, "to_documents") and hasattr(store, "index_engine") and hasattr(store.embeddings, "teola_engine"):
        return None
    if type(store) is InMemoryVectorStore and isinstance(store.embeddings, Embeddings):
        return None
    return (f"its store {type(store).__name__} is not one Teola searches (a TeolaVectorStore, or LangChain's "
            "InMemoryVectorStore)")


def bind_store_search(store: Any) -> EngineBinding:
    """The search engine of a store ``store_why_not`` accepts: a TeolaVectorStore's own, or one around
    the store's own search by vector (its hits are its documents)."""
    if hasattr(store, "index_engine"):
        return EngineBinding(store.index_engine)
    spec = EngineSpec(EngineKind.VECTOR_INDEX, f"langchain:{type(store).__name__}:{object_key(store)}",
                      build=functools.partial(FunctionSearchEngine, store.similarity_search_by_vector), in_process=True)
    return EngineBinding(spec.id, spec)


def store_documents(store: Any, hits: list) -> list:
    """The documents of a search's hits: a TeolaVectorStore maps (id, score) hits; other stores' hits are documents."""
    return store.to_documents(hits) if hasattr(store, "to_documents") else list(hits)
