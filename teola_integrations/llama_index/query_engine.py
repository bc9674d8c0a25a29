"""``optimize()`` for LlamaIndex: a query engine that runs the user's pipeline on Teola's runtime."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Iterable

import numpy as np
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.schema import QueryBundle, QueryType

from teola.adapters.llama_index import AppReading, IndexSource, read_query_engine
from teola.adapters.llama_index.as_asked import asked
from teola.adapters.llama_index.spans import QuerySpans, query_span, reports_its_own_span
from teola.optimizer.ir import Graph
from teola.optimizer.ops import EngineKind
from teola.optimizer.passes import PASSES
from teola.runtime.engines.vector_index import FaissIndexEngine
from teola.runtime.errors import PrimitiveError, original_error
from teola.runtime.registry import EngineSpec
from teola.runtime.runtime import Runtime, get_runtime
from teola_integrations.compile import compile_graph

log = logging.getLogger(__name__)


def _index_engine(source: IndexSource) -> FaissIndexEngine:
    if source.faiss_index is not None:
        return FaissIndexEngine.from_index(source.faiss_index)
    return FaissIndexEngine.from_vectors(source.ids, np.asarray(source.vectors, dtype=np.float32))


class TeolaQueryEngine(BaseQueryEngine):
    """A LlamaIndex query engine whose queries run as primitive graphs on shared engines.

    It keeps the wrapped engine's interface: ``query``/``aquery`` return the same ``Response``
    (text, ``source_nodes``, metadata) the native engine returns, and raise what it raises (a
    component's own exception, not Teola's wrapper of it). ``primitive_graph`` is the lowered
    graph, ``plan`` the same after the chosen passes. Each query's primitive timings go to the
    caller's ``teola.runtime.traces.record_traces()``, when one is open.
    """

    def __init__(self, native: BaseQueryEngine, reading: AppReading, runtime: Runtime,
                 passes: Iterable[str] = PASSES) -> None:
        super().__init__(callback_manager=native.callback_manager)
        self.native = native
        self.fallbacks = list(reading.fallbacks)
        self._reports_query = not reading.whole  # an engine run whole reports its own query span
        self._runtime = runtime
        specs = [EngineSpec(EngineKind.VECTOR_INDEX, source.key, build=partial(_index_engine, source))
                 for source in reading.indexes]
        for spec in [*reading.engines, *specs]:  # each held by this engine: released with the last app serving it
            runtime.engine(spec, self)
        compiled = compile_graph(reading.graph, runtime, passes)
        self.module_graph: Graph = compiled.module_graph
        self.primitive_graph: Graph = compiled.primitive_graph
        self.plan: Graph = compiled.plan
        self._scheduler = runtime.prepare(self.plan)

    def _get_prompt_modules(self) -> dict[str, Any]:
        return self.native._get_prompt_modules()

    @reports_its_own_span
    def query(self, str_or_query_bundle: QueryType) -> RESPONSE_TYPE:
        """Answer as the wrapped engine's ``query`` does, reporting its span (named after it), its
        query events and its components' spans and events to LlamaIndex's instrumentation."""
        if not self._reports_query:
            return self._execute(_bundle(str_or_query_bundle), None)
        with query_span(self.native, str_or_query_bundle) as span, self.callback_manager.as_trace("query"):
            span.result = self._execute(_bundle(str_or_query_bundle), span.context)
        return span.result

    @reports_its_own_span
    async def aquery(self, str_or_query_bundle: QueryType) -> RESPONSE_TYPE:
        """``query``, awaited."""
        if not self._reports_query:
            return await self._aexecute(_bundle(str_or_query_bundle), None)
        with query_span(self.native, str_or_query_bundle, "aquery") as span, self.callback_manager.as_trace("query"):
            span.result = await self._aexecute(_bundle(str_or_query_bundle), span.context)
        return span.result

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return self._execute(query_bundle, None)

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        return await self._aexecute(query_bundle, None)

    def _execute(self, query_bundle: QueryBundle, spans: QuerySpans | None) -> RESPONSE_TYPE:
        try:
            with asked(asynchronously=False):
                return self._runtime.execute(self._scheduler, _inputs(query_bundle, spans))["response"]
        except PrimitiveError as exc:
            error = original_error(exc)
        raise error  # outside the handler: the component's own exception, as the native engine raises it

    async def _aexecute(self, query_bundle: QueryBundle, spans: QuerySpans | None) -> RESPONSE_TYPE:
        try:
            with asked(asynchronously=True):  # what runs as-is runs its async twin on this loop, as natively
                return (await self._runtime.aexecute(self._scheduler, _inputs(query_bundle, spans)))["response"]
        except PrimitiveError as exc:
            error = original_error(exc)
        raise error


def _bundle(str_or_query_bundle: QueryType) -> QueryBundle:
    return QueryBundle(str_or_query_bundle) if isinstance(str_or_query_bundle, str) else str_or_query_bundle


def _inputs(query_bundle: QueryBundle, spans: QuerySpans | None) -> dict[str, Any]:
    if query_bundle.custom_embedding_strs or query_bundle.embedding is not None:
        raise ValueError("Teola takes plain text queries; custom embedding strings or precomputed embeddings "
                         "are not supported yet: query the native engine for those")
    return {"query_str": query_bundle.query_str, "spans": spans}


def optimize(query_engine: Any, runtime: Runtime | None = None, passes: Iterable[str] = PASSES) -> TeolaQueryEngine:
    """Wrap a LlamaIndex ``RetrieverQueryEngine`` so its queries run on Teola's runtime.

    ``passes`` picks the optimizations (all by default; ``()`` runs the graph as the framework
    orders it). What Teola cannot lower runs unchanged as one ``call`` primitive (logged once,
    listed in ``.fallbacks``). Raises ``UnsupportedPipelineError`` for objects it cannot read at all.
    """
    return TeolaQueryEngine(query_engine, read_query_engine(query_engine), runtime or get_runtime(), passes)
