"""A LlamaIndex query engine that runs the user's pipeline on Teola's runtime."""

from __future__ import annotations

from typing import Any, Iterable

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.schema import QueryBundle, QueryType

from teola.adapters.llama_index import AppReading
from teola.adapters.llama_index.spans import QuerySpans, query_span, reports_its_own_span
from teola.optimizer.passes import PASSES
from teola.runtime.runtime import Runtime
from teola_integrations.llama_index.app import CompiledApp, OptimizedApp


class TeolaQueryEngine(OptimizedApp, BaseQueryEngine):
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
        self._reports_query = not reading.whole  # an engine run whole reports its own query span
        self._app = CompiledApp(reading, runtime, passes, self)

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
        return self._app.run(_inputs(query_bundle, spans))

    async def _aexecute(self, query_bundle: QueryBundle, spans: QuerySpans | None) -> RESPONSE_TYPE:
        return await self._app.arun(_inputs(query_bundle, spans))


def _bundle(str_or_query_bundle: QueryType) -> QueryBundle:
    return QueryBundle(str_or_query_bundle) if isinstance(str_or_query_bundle, str) else str_or_query_bundle


def _inputs(query_bundle: QueryBundle, spans: QuerySpans | None) -> dict[str, Any]:
    if query_bundle.custom_embedding_strs or query_bundle.embedding is not None:
        raise ValueError("Teola takes plain text queries; custom embedding strings or precomputed embeddings "
                         "are not supported yet: query the native engine for those")
    return {"query_str": query_bundle.query_str, "spans": spans}
