"""What a backend offers the runtime: engines started somewhere, driven the same way."""

from __future__ import annotations

import abc
from typing import Any, Callable

from teola.runtime.engines.base import BatchEngine
from teola.runtime.engines.llm import LLMEngine


class Backend(abc.ABC):
    """Starts the engines the runtime asks for. Its methods run on the runtime's event loop, and
    what they return is driven by the engine schedulers as an in-process engine would be."""

    def open(self) -> None:
        """Get ready to start engines (join a cluster); called from the thread that first asks for one."""

    @abc.abstractmethod
    async def llm(self, model: str, **engine_args: Any) -> LLMEngine:
        """An LLM engine serving ``model``, started with ``engine_args`` (see ``VLLMEngine``)."""

    @abc.abstractmethod
    async def embedding(self, model: str) -> BatchEngine:
        """An embedding engine serving ``model``."""

    @abc.abstractmethod
    async def vector_index(self, build: Callable[[], BatchEngine]) -> BatchEngine:
        """A vector index engine: what ``build`` returns, served where this backend serves indexes."""

    def close(self) -> None:
        """Release what the backend holds beyond its engines (they are closed by their schedulers)."""
