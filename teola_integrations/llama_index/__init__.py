"""Teola for LlamaIndex: ``optimize(query_engine)``, ``optimize(chat_engine)`` and engine-backed LLM / embedding classes."""

from teola.adapters.llama_index import UnsupportedPipelineError
from teola_integrations.llama_index.engines import TeolaEmbedding, TeolaLLM
from teola_integrations.llama_index.guided import guided_llm, selection_schema, sub_question_schema
from teola_integrations.llama_index.chat_engine import TeolaChatEngine
from teola_integrations.llama_index.optimize import optimize
from teola_integrations.llama_index.query_engine import TeolaQueryEngine

__all__ = ["optimize", "TeolaQueryEngine", "TeolaChatEngine", "TeolaLLM", "TeolaEmbedding", "UnsupportedPipelineError", "guided_llm",
           "selection_schema", "sub_question_schema"]
