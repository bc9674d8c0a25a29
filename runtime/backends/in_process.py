"""The default backend: every engine in this process, on the runtime's loop and worker threads."""

from __future__ import annotations

from typing import Any

from teola.runtime.backends.base import Backend
from teola.runtime.registry import ENGINE_KINDS, EngineSpec


class InProcessBackend(Backend):
    """Engines in this process: vLLM's engine core in its own subprocess (started on a worker thread
    and checked against its model's known answers), the others on threads."""

    async def start(self, spec: EngineSpec) -> Any:
        """The engine, as its kind's registry entry starts it here."""
        return await ENGINE_KINDS[spec.kind].start_here(spec)
