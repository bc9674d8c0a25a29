"""Every private or internal langchain-core name Teola touches, in one place, checked against the
installed version.

The LangChain side reuses a model's own input conversion and a prompt's own input check (so the
optimized run builds the very prompt the native run does), runs steps the way LangChain's
composites run their children (config context, child configs, executor), and streams through the
``Runnable`` helpers meant for subclasses. Nothing else in Teola imports them from where they live:
``PRIVATE_NAMES`` and ``INTERNAL_NAMES`` list them, ``moved_names`` says which the installed
langchain-core lacks (a test fails naming them), and another release line than ``TESTED`` gets one
warning when a chain is first read.
"""

from __future__ import annotations

import importlib
import sys
import logging
from typing import Any

import langchain_core
from langchain_core.language_models import BaseChatModel, BaseLanguageModel, BaseLLM
from langchain_core.language_models.chat_models import _generate_response_from_error
from langchain_core.outputs import LLMResult
from langchain_core.prompts import BasePromptTemplate
from langchain_core.prompt_values import PromptValue
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.base import RunnableEach
from langchain_core.runnables.retry import RunnableRetry
from langchain_core.runnables.config import (get_async_callback_manager_for_config, get_callback_manager_for_config,
                                             get_executor_for_config, merge_configs, set_config_context)
from langchain_core.runnables.utils import coro_with_context
from langchain_core.tracers._streaming import _StreamingCallbackHandler, _V2StreamingCallbackHandler

try:  # langchain-classic (the clients extra brings it) is optional: its EnsembleRetriever is lowered where it is there
    from langchain_classic.retrievers import EnsembleRetriever
except ImportError:
    EnsembleRetriever = None

log = logging.getLogger(__name__)

TESTED = "1.8"

# Private methods, by the class that has them.
PRIVATE_NAMES: dict[type, tuple[str, ...]] = {
    BaseChatModel: ("_convert_input", "_serialized", "_get_invocation_params", "_get_ls_params_with_defaults"),
    BaseLLM: ("_convert_input", "_serialized", "_dict_for_compat", "_get_ls_params_with_defaults"),
    BasePromptTemplate: ("_validate_input", "_serialized"),
    BaseRetriever: ("_get_ls_params",),
}
# Private names of the OpenAI clients (langchain-openai, langchain-community: optional), by module and class.
CLIENT_PRIVATE_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("langchain_openai.chat_models.base", "BaseChatOpenAI"): ("_default_params",),
    ("langchain_openai.llms.base", "BaseOpenAI"): ("_default_params",),
    ("langchain_community.llms.openai", "BaseOpenAI"): ("_invocation_params",),
}
# Names langchain-core's own modules define but its packages do not export.
INTERNAL_NAMES: dict[str, tuple[str, ...]] = {
    "langchain_core.language_models.chat_models": ("_generate_response_from_error",),
    "langchain_core.runnables.base": ("RunnableEach",),
    "langchain_core.runnables.retry": ("RunnableRetry",),
    "langchain_core.runnables.config": ("get_async_callback_manager_for_config", "get_callback_manager_for_config",
                                        "get_executor_for_config", "merge_configs", "set_config_context"),
    "langchain_core.runnables.utils": ("coro_with_context",),
    "langchain_core.tracers._streaming": ("_StreamingCallbackHandler", "_V2StreamingCallbackHandler"),
}
# The marker classes of callback handlers that make runnables stream to them (chat models stream, a
# runnable's output is tapped): v1 token chunks, and v2 content-block events.
STREAMING_HANDLERS: tuple[type, ...] = (_StreamingCallbackHandler, _V2StreamingCallbackHandler)
TAPPING_HANDLER: type = _StreamingCallbackHandler

__all__ = ["STREAMING_HANDLERS", "TAPPING_HANDLER", "RunnableEach", "convert_input", "model_run_params", "prompt_serialized", "retriever_ls_params", "coro_with_context", "get_async_callback_manager_for_config",
           "get_callback_manager_for_config", "get_executor_for_config", "moved_names", "set_config_context",
           "validate_input"]


def moved_names() -> list[str]:
    """Every name of ``PRIVATE_NAMES``, ``INTERNAL_NAMES`` and ``CLIENT_PRIVATE_NAMES`` the installed
    langchain-core (and langchain-openai, where installed) lacks."""
    missing = [f"{cls.__name__}.{name}" for cls, names in PRIVATE_NAMES.items() for name in names
               if not hasattr(cls, name)]
    for module, names in INTERNAL_NAMES.items():
        loaded = importlib.import_module(module)
        missing += [f"{module}.{name}" for name in names if not hasattr(loaded, name)]
    for (module, cls), names in CLIENT_PRIVATE_NAMES.items():
        try:
            client = getattr(importlib.import_module(module), cls)
        except ImportError:  # not installed: no app uses it
            continue
        missing += [f"{cls}.{name}" for name in names if not hasattr(client, name)]
    return missing


_warned = False


def check_version() -> None:
    """Warn once if the installed langchain-core is not the release line these names were read from."""
    global _warned
    if not _warned and not langchain_core.__version__.startswith(f"{TESTED}."):
        _warned = True
        log.warning("teola: langchain-core %s is not %s.x, the release Teola's LangChain adapter was checked "
                    "against; if a chain fails to read, pin langchain-core~=%s.0", langchain_core.__version__, TESTED,
                    TESTED)


def convert_input(model: BaseLanguageModel, value: Any) -> PromptValue:
    """What ``model`` makes of its input (a string, messages, a prompt value) before it calls its LLM."""
    return model._convert_input(value)


def request_params(model: Any) -> dict[str, Any]:
    """The parameters an OpenAI chat model or LLM puts in every request body besides the prompt (its
    stop sequences included): langchain-openai's default parameters, langchain-community's invocation
    parameters (``VLLMOpenAI`` sends no ``logit_bias`` there)."""
    community = sys.modules.get("langchain_community.llms.openai")  # loaded if the model is one of its clients
    params = dict(model._invocation_params if community and isinstance(model, community.BaseOpenAI)
                  else model._default_params)
    if getattr(model, "stop", None):
        params["stop"] = model.stop
    return params


def validate_input(prompt: BasePromptTemplate, values: Any) -> dict[str, Any]:
    """``values`` as ``prompt.invoke`` checks and completes them before formatting."""
    return prompt._validate_input(values)


def prompt_serialized(prompt: BasePromptTemplate) -> dict[str, Any]:
    """What ``prompt.invoke`` reports of the prompt when its run starts."""
    return prompt._serialized


def retriever_ls_params(retriever: BaseRetriever) -> dict[str, Any]:
    """The tracing metadata ``retriever.invoke`` adds to its run."""
    return retriever._get_ls_params()


def model_run_params(model: BaseLanguageModel) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What ``model.invoke`` (no stop sequences, no call arguments) reports when its run starts:
    the model serialized, its invocation parameters, its tracing metadata."""
    params = ({**model._dict_for_compat(), "stop": None} if isinstance(model, BaseLLM)
              else model._get_invocation_params(stop=None))
    return model._serialized, params, model._get_ls_params_with_defaults(stop=None)


def model_error_result(model: BaseLanguageModel, error: BaseException) -> LLMResult:
    """The result a model's run reports with ``error``: a chat model's from the error (its HTTP
    response's body and headers, where it has one), an LLM's empty."""
    if isinstance(model, BaseChatModel):
        return LLMResult(generations=[_generate_response_from_error(error)])
    return LLMResult(generations=[])
