"""Teola for LlamaIndex: ``optimize(query_engine)`` and engine-backed LLM / embedding classes."""

from teola.adapters.llama_index import UnsupportedPipelineError
from teola_integrations.llama_index.engines import TeolaEmbedding, TeolaLLM
from teola_integrations.llama_index.guided import guided_llm, sub_question_schema
from teola_integrations.llama_index.query_engine import TeolaQueryEngine, optimize

__all__ = ["optimize", "TeolaQueryEngine", "TeolaLLM", "TeolaEmbedding", "UnsupportedPipelineError", "guided_llm",
           "sub_question_schema"]
