"""Teola's integrations with LlamaIndex and LangChain (``teola_integrations.llama_index``,
``teola_integrations.langchain``) and what both share: ``add_server_replicas``, which spreads what
the user's clients send to one OpenAI-compatible server over several servers of its model."""

from teola.runtime.engines.server_pool import add_server_replicas

__all__ = ["add_server_replicas"]
