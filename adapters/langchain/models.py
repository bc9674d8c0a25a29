"""The chain's own chat models and LLMs as Teola engines.

Teola's own classes carry their engine (``teola_engine``, ``teola_sampling``). The standard
OpenAI clients (langchain-openai's ``ChatOpenAI`` and ``OpenAI``) pointed at an OpenAI-compatible
server (vLLM's, usually) are read off their configuration and become an engine on that server,
sending what the client itself would send. Reading a client never logs its API key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseLanguageModel

from teola.adapters.langchain.compat import request_params
from teola.optimizer.ops import EngineId
from teola.optimizer.values import Sampling
from teola.runtime.engines.openai_server import Secret, ServerEndpoint, request_sampling
from teola.runtime.registry import EngineSpec

try:
    from langchain_openai.chat_models.base import BaseChatOpenAI
    from langchain_openai.llms.base import BaseOpenAI

    OPENAI_CLIENTS: tuple[type, ...] = (BaseChatOpenAI, BaseOpenAI)
except ImportError:  # langchain-openai is optional: without it no chain can use its clients
    OPENAI_CLIENTS = ()


@dataclass(frozen=True)
class ModelBinding:
    """The engine a model's calls run on, and the sampling it asks for. ``spec``: the engine the
    chain must start (None: a Teola class, on its engine already)."""

    engine: EngineId
    sampling: Sampling
    spec: EngineSpec | None = None


def model_why_not(model: Any) -> str | None:
    """Why ``model``'s calls cannot run on a Teola engine (None: they can)."""
    if not isinstance(model, BaseLanguageModel):
        return f"{type(model).__name__} is not a LangChain chat model or LLM"
    if hasattr(model, "teola_engine") and hasattr(model, "teola_sampling"):
        return None
    if isinstance(model, OPENAI_CLIENTS):
        if getattr(model, "use_responses_api", None):
            return "it uses the Responses API (Teola sends chat and completions requests)"
        if (request_params(model).get("n") or 1) != 1:
            return "it asks for several choices (n != 1)"
        return None
    return (f"{type(model).__name__} is not a model Teola serves (use teola_integrations.langchain.TeolaChatModel "
            "or TeolaLLM, or a langchain-openai ChatOpenAI/OpenAI client of an OpenAI-compatible server)")


def server_endpoint(model: Any) -> ServerEndpoint:
    """Where a langchain-openai client sends its requests (its OpenAI client's base URL and key)."""
    client = model.root_client
    headers = tuple((name, Secret(str(value))) for name, value in (model.default_headers or {}).items())
    timeout = model.request_timeout
    return ServerEndpoint(str(client.base_url), model.model_name, Secret(client.api_key) if client.api_key else None,
                          headers, float(timeout) if isinstance(timeout, (int, float)) else 60.0,
                          2 if model.max_retries is None else int(model.max_retries))


def bind_model(model: Any) -> ModelBinding:
    """The engine and sampling of a model ``model_why_not`` accepts."""
    if hasattr(model, "teola_engine"):
        return ModelBinding(model.teola_engine, model.teola_sampling)
    spec = server_endpoint(model).spec()
    return ModelBinding(spec.id, request_sampling(request_params(model)), spec)
