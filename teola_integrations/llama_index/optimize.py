"""``optimize()`` for LlamaIndex: a query or chat engine that runs the user's pipeline on Teola's runtime."""

from __future__ import annotations

from typing import Any, Iterable, overload

from llama_index.core.chat_engine.types import BaseChatEngine

from teola.adapters.llama_index import read_chat_engine, read_query_engine
from teola.optimizer.passes import PASSES
from teola.runtime.runtime import Runtime, get_runtime
from teola_integrations.llama_index.chat_engine import TeolaChatEngine
from teola_integrations.llama_index.query_engine import TeolaQueryEngine


@overload
def optimize(app: BaseChatEngine, runtime: Runtime | None = None, passes: Iterable[str] = PASSES) -> TeolaChatEngine:
    ...


@overload
def optimize(app: Any, runtime: Runtime | None = None, passes: Iterable[str] = PASSES) -> TeolaQueryEngine:
    ...


def optimize(app: Any, runtime: Runtime | None = None, passes: Iterable[str] = PASSES) -> TeolaQueryEngine | TeolaChatEngine:
    """Wrap a LlamaIndex query engine (``index.as_query_engine()`` ...) or chat engine
    (``index.as_chat_engine()`` ...) so its queries or chat turns run on Teola's runtime.

    ``passes`` picks the optimizations (all by default; ``()`` runs the graph as the framework
    orders it). What Teola cannot lower runs unchanged as one ``call`` primitive (logged once,
    listed in ``.fallbacks``). Raises ``UnsupportedPipelineError`` for objects it cannot read at all.
    """
    if isinstance(app, BaseChatEngine):
        return TeolaChatEngine(app, read_chat_engine(app), runtime or get_runtime(), passes)
    return TeolaQueryEngine(app, read_query_engine(app), runtime or get_runtime(), passes)
