"""LlamaIndex adapter: reads a query engine (or a chat engine's turn, ``chat_engine``) into a module
graph, one recogniser per component family.

It runs nothing itself. Each family (``retrievers``: vector index retriever, query fusion;
``rerank``: LLMRerank; ``refine``: the compact and refine response modes; ``synthesizers``:
tree_summarize, simple_summarize, accumulate; ``hyde``; ``sub_question``: SubQuestionQueryEngine; ``router``:
RouterQueryEngine; their LLM selector and question generator: ``predict``) has a recogniser that
says whether a component is of it, why it cannot be lowered (``why_not``), and reads it into
modules (``read``). What no recogniser lowers runs unchanged as a ``call`` module (with one log
line saying why). The callables modules carry reuse LlamaIndex's own code (prompt helper,
templates, node mapping, response building), so the optimized run computes the very prompt and
response the native run does; every private LlamaIndex name they touch is in ``compat``.

The app's LLM and embedding model become engines in ``models``: a Teola class carries its own
(``teola_engine``, ``teola_sampling``); an OpenAI/OpenAILike client becomes an engine on its server,
any other ``BaseEmbedding`` an engine around the model object; the reading lists the engines the app
must start (``AppReading.engines``).
"""

from teola.adapters.llama_index.chat_engine import read_chat_engine, streamed_turn_why_not
from teola.adapters.llama_index.query_engine import read_query_engine
from teola.adapters.llama_index.reading import AppReading, IndexSource, UnsupportedPipelineError, to_prompt

__all__ = ["AppReading", "IndexSource", "UnsupportedPipelineError", "read_chat_engine", "read_query_engine",
           "streamed_turn_why_not", "to_prompt"]
