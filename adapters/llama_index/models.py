"""The app's own LLM and embedding model as Teola engines.

Teola's own classes carry their engine (``teola_engine``, ``teola_sampling``). The standard
clients are read off their public configuration: an ``OpenAI`` or ``OpenAILike`` LLM pointed at an
OpenAI-compatible server (vLLM's, usually) becomes an engine on that server, sending what the
client itself would send; any other ``BaseEmbedding`` becomes a batching engine around the model
object itself. Reading a client never logs its API key.
"""

from __future__ import annotations

import functools
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from teola.adapters.llama_index import compat as li
from teola.adapters.bindings import EngineBinding, LLMBinding, object_key
from teola.adapters.llama_index.reading import AppReading, to_prompt
from teola.optimizer.ops import EngineKind
from teola.optimizer.values import Prompt
from teola.runtime.engines.embedding import FunctionEmbeddingEngine
from teola.runtime.engines.openai_server import Secret, ServerEndpoint, request_sampling
from teola.runtime.engines.server_pool import endpoint_spec
from teola.runtime.registry import EngineSpec

try:
    from llama_index.llms.openai import OpenAI
except ImportError:  # the OpenAI client is optional: without it no app can use one
    OpenAI = None
try:
    from llama_index.llms.openai_like import OpenAILike
except ImportError:
    OpenAILike = None


def _is_openai_client(llm: Any) -> bool:
    return OpenAI is not None and isinstance(llm, OpenAI)


def llm_why_not(llm: Any) -> str | None:
    """Why ``llm``'s calls cannot run on a Teola engine (None: they can)."""
    if hasattr(llm, "teola_engine") and hasattr(llm, "teola_sampling"):
        return None
    if _is_openai_client(llm):
        if li.request_params(llm).get("n", 1) != 1:
            return "it asks for several choices (n != 1)"
        return None
    return (f"its LLM {type(llm).__name__} is not one Teola serves (use teola_integrations.llama_index.TeolaLLM, "
            "or an OpenAI/OpenAILike client of an OpenAI-compatible server)")


def server_endpoint(llm: Any) -> ServerEndpoint:
    """Where an OpenAI/OpenAILike client sends its requests, as it would send them."""
    headers = tuple((name, Secret(str(value))) for name, value in (llm.default_headers or {}).items())
    return ServerEndpoint(llm.api_base, llm.model, Secret(llm.api_key) if llm.api_key else None, headers,
                          float(llm.timeout), int(llm.max_retries))


def completion_prompt(llm: Any, text: str) -> Prompt:
    """What ``llm.complete(text)`` sends: a Teola LLM the text itself; an OpenAI client a user message
    when it is a chat model (OpenAILike first applies its ``completion_to_prompt``), else the text."""
    if hasattr(llm, "teola_engine"):
        return Prompt(text=text)
    if OpenAILike is not None and isinstance(llm, OpenAILike):
        text = llm.completion_to_prompt(text)
    if llm.metadata.is_chat_model:
        return to_prompt([ChatMessage(role=MessageRole.USER, content=text)])
    return Prompt(text=text)


def bind_llm(llm: Any) -> LLMBinding:
    """The engine and sampling of an LLM ``llm_why_not`` accepts."""
    if hasattr(llm, "teola_engine"):
        return LLMBinding(llm.teola_engine, sampling=llm.teola_sampling)
    spec = endpoint_spec(server_endpoint(llm))
    return LLMBinding(spec.id, spec, request_sampling(li.request_params(llm)))


def embedding_why_not(model: Any) -> str | None:
    """Why ``model``'s query embeddings cannot run on a Teola engine (None: they can)."""
    if hasattr(model, "teola_engine") or isinstance(model, BaseEmbedding):
        return None
    return f"its embedding model {type(model).__name__} is not a LlamaIndex BaseEmbedding (nor a TeolaEmbedding)"


def bind_embedding(model: Any) -> EngineBinding:
    """The engine of an embedding model ``embedding_why_not`` accepts: a Teola class's own, or one
    around the model object that computes query embeddings as the model itself does, batched
    across the queries in flight where the model has a batch encode (``compat.query_embeddings``)."""
    if hasattr(model, "teola_engine"):
        return EngineBinding(model.teola_engine)
    build = functools.partial(FunctionEmbeddingEngine, functools.partial(li.query_embeddings, model),
                              "How does the with statement call a context manager's methods?", model.embed_batch_size)
    spec = EngineSpec(EngineKind.EMBEDDING, f"llama_index:{type(model).__name__}:{object_key(model)}",
                      build=build, in_process=True)
    return EngineBinding(spec.id, spec)


def llm_for(reading: AppReading, llm: Any) -> LLMBinding:
    """``bind_llm(llm)``, its engine recorded as one ``reading``'s app needs."""
    binding = bind_llm(llm)
    reading.needs(binding.spec)
    return binding


def embedding_for(reading: AppReading, model: Any) -> EngineBinding:
    """``bind_embedding(model)``, its engine recorded as one ``reading``'s app needs."""
    binding = bind_embedding(model)
    reading.needs(binding.spec)
    return binding
