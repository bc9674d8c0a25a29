"""Teola for LangChain: ``optimize(runnable)``, the executor switch, and engine-backed model classes."""

from teola.adapters.langchain import UnsupportedRunnableError
from teola_integrations.langchain.engines import TeolaChatModel, TeolaEmbeddings, TeolaLLM, TeolaVectorStore
from teola_integrations.langchain.executor import (disable_teola_executor, enable_teola_executor,
                                                   is_teola_executor_enabled, teola_executor)
from teola_integrations.langchain.runnable import TeolaRunnable, optimize

__all__ = ["TeolaChatModel", "TeolaEmbeddings", "TeolaLLM", "TeolaRunnable", "TeolaVectorStore",
           "UnsupportedRunnableError", "disable_teola_executor", "enable_teola_executor", "is_teola_executor_enabled",
           "optimize", "teola_executor"]
