"""A LlamaIndex app's reading compiled for Teola's runtime: what every wrapper (query engine, chat engine) runs on."""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable

import numpy as np

from teola.adapters.llama_index import AppReading, IndexSource
from teola.adapters.llama_index.as_asked import asked
from teola.optimizer.ir import Graph
from teola.optimizer.ops import EngineKind
from teola.runtime.engines.vector_index import FaissIndexEngine
from teola.runtime.errors import PrimitiveError, original_error
from teola.runtime.registry import EngineSpec
from teola.runtime.runtime import Runtime
from teola_integrations.compile import compile_graph


def _index_engine(source: IndexSource) -> FaissIndexEngine:
    if source.faiss_index is not None:
        return FaissIndexEngine.from_index(source.faiss_index)
    return FaissIndexEngine.from_vectors(source.ids, np.asarray(source.vectors, dtype=np.float32))


class CompiledApp:
    """A reading compiled for a runtime: its engines started (held by ``owner``, released with the
    last app serving them) and its plan prepared; ``run``/``arun`` answer one query, raising what the
    framework raises (a component's own exception, not Teola's wrapper of it)."""

    def __init__(self, reading: AppReading, runtime: Runtime, passes: Iterable[str], owner: Any) -> None:
        self.runtime = runtime
        self.fallbacks = list(reading.fallbacks)
        specs = [EngineSpec(EngineKind.VECTOR_INDEX, source.key, build=partial(_index_engine, source))
                 for source in reading.indexes]
        for spec in [*reading.engines, *specs]:
            runtime.engine(spec, owner)
        self.compiled = compile_graph(reading.graph, runtime, passes)
        self._scheduler = runtime.prepare(self.compiled.plan)

    def run(self, inputs: dict[str, Any]) -> Any:
        """The plan's ``response`` for ``inputs``, asked synchronously (as ``query``/``chat``)."""
        try:
            with asked(asynchronously=False):
                return self.runtime.execute(self._scheduler, inputs)["response"]
        except PrimitiveError as exc:
            error = original_error(exc)
        raise error  # outside the handler: the component's own exception, as the native engine raises it

    async def arun(self, inputs: dict[str, Any]) -> Any:
        """``run``, awaited (as ``aquery``/``achat``: what runs as-is runs its async twin on this loop)."""
        try:
            with asked(asynchronously=True):
                return (await self.runtime.aexecute(self._scheduler, inputs))["response"]
        except PrimitiveError as exc:
            error = original_error(exc)
        raise error


class OptimizedApp:
    """What every Teola wrapper of a LlamaIndex app shows of its compiled app (``_app``): the
    components that run unoptimized (``fallbacks``, each with why), the module graph it read, the
    lowered primitive graph and the ``plan`` it runs (the same after the chosen passes)."""

    _app: CompiledApp

    @property
    def fallbacks(self) -> list[str]:
        """The components that run unoptimized, as one call each, and why."""
        return self._app.fallbacks

    @property
    def module_graph(self) -> Graph:
        """The app read as a module graph."""
        return self._app.compiled.module_graph

    @property
    def primitive_graph(self) -> Graph:
        """The module graph lowered into primitives."""
        return self._app.compiled.primitive_graph

    @property
    def plan(self) -> Graph:
        """The primitive graph after the chosen passes: what each query runs."""
        return self._app.compiled.plan
