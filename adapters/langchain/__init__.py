"""LangChain adapter: traces an LCEL runnable into a module graph.

It runs nothing itself. Tracing follows the runnables' own structure (``steps``, ``steps__``,
``mapper``, ``bound``, ``func``) and passes values symbolically: a ``RunnableParallel``'s output is a
dict of per-key values, so a prompt reads only the keys it formats and an ``itemgetter`` picks a
key without a node. Data edges are therefore the true ones: two ``.assign`` steps that read
different keys run side by side, and a question-first prompt can be prefilled while retrieval runs.

What Teola lowers into primitives: a prompt template followed by a chat model or LLM backed by a
Teola engine (and an output parser after it; a numbered or markdown list parser cut to its first
``n`` items by ``itemgetter(slice(n))`` becomes a bounded list the passes stream into its readers,
stopping the decode after ``n`` items), a Teola engine-backed model alone, such an LLM call
``.map()``-ed over a list (one call per item, sent together), a retriever over a ``TeolaVectorStore``
(alone, or ``.map()``-ed over a list of queries), and the branches, fallbacks, retries and
ensembles of these. Everything else runs
unchanged as a ``call``: the step's own ``invoke``/``ainvoke`` with the child config LangChain would
give it, so its callbacks, tags and run tree are its own.

The families live apart: ``tracer`` (the structure and the dispatch), ``llm_calls`` (prompt |
model | parser runs, and a model alone), ``each_call`` (their ``.map()``), ``retrievers``, ``branch``,
``attempts`` (fallbacks, retries); each lowered step family is a
``StepRecogniser`` with ``accepts``, ``why_not`` and ``read``. Every private or internal
langchain-core name is in ``compat``.

The chain's models, embeddings and stores become engines in ``models``: Teola's classes carry their
own (``teola_engine``, ``teola_sampling``, ``index_engine``); a langchain-openai client becomes an
engine on its server, an ``InMemoryVectorStore`` and its ``Embeddings`` engines around the objects;
the reading lists the engines the chain must start (``ChainReading.engines``).
"""

from teola.adapters.langchain.llm_calls import FinalGeneration, to_prompt
from teola.adapters.langchain.steps import StepFrame, level_graph
from teola.adapters.langchain.tracer import ChainReading, RoutedAnswer, UnsupportedRunnableError, read_runnable

__all__ = ["ChainReading", "FinalGeneration", "RoutedAnswer", "StepFrame", "UnsupportedRunnableError", "level_graph", "read_runnable",
           "to_prompt"]
