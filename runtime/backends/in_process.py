"""The default backend: every engine in this process, on the runtime's loop and worker threads."""

from __future__ import annotations

from typing import Any, Callable

from teola.runtime.backends.base import Backend
from teola.runtime.engines.base import BatchEngine
from teola.runtime.engines.llm import LLMEngine


class InProcessBackend(Backend):
    """Engines in this process: vLLM's engine core in its own subprocess, the others on threads."""

    async def llm(self, model: str, **engine_args: Any) -> LLMEngine:
        """A vLLM engine here, started on a worker thread (the runtime loop serves on meanwhile) and
        checked against its model's known answers."""
        from teola.runtime.engines.llm import VLLMEngine

        return await VLLMEngine.started(model, **engine_args)

    async def embedding(self, model: str) -> BatchEngine:
        """A sentence-transformers engine here."""
        from teola.runtime.engines.embedding import SentenceTransformerEngine

        return SentenceTransformerEngine(model)

    async def vector_index(self, build: Callable[[], BatchEngine]) -> BatchEngine:
        """The index ``build`` makes, searched here."""
        return build()
