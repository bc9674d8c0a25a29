"""What a backend offers the runtime: engines started somewhere, driven the same way."""

from __future__ import annotations

import abc
from typing import Any

from teola.runtime.registry import EngineSpec


class Backend(abc.ABC):
    """Starts the engines the runtime asks for. Its methods run on the runtime's event loop, and
    what they return is driven by the engine schedulers as an in-process engine would be."""

    def open(self) -> None:
        """Get ready to start engines (join a cluster); called from the thread that first asks for one."""

    @abc.abstractmethod
    async def start(self, spec: EngineSpec) -> Any:
        """The engine ``spec`` asks for, started where this backend runs engines."""

    def close(self) -> None:
        """Release what the backend holds beyond its engines (they are closed by their schedulers)."""
