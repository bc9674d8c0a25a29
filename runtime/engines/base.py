"""What every engine states and offers to its scheduler."""

from __future__ import annotations

import abc
import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can do, as its scheduler needs to know.

    ``max_batch``: the most requests one batch may hold. ``batches_itself``: the engine batches
    concurrent requests on its own (continuous batching), so the scheduler forwards them at once.
    ``streaming``: results can be streamed. ``prefix_reuse``: a prompt prefix sent earlier is reused.
    ``concurrent_batches``: how many batches the engine runs at once (its replicas, behind a backend
    that spreads batches over several).
    """

    max_batch: int = 64
    batches_itself: bool = False
    streaming: bool = False
    prefix_reuse: bool = False
    concurrent_batches: int = 1


class BatchEngine(abc.ABC):
    """An engine that takes a batch of same-op requests and returns one result per request.

    Blocking model code runs on the engine's own single worker thread, so the event loop never
    waits on it and the model never runs two batches at once.
    """

    capabilities = EngineCapabilities()
    settings: Mapping[str, Any] = {}  # what the engine started with (an engine that has settings sets its own)

    def __init__(self) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=type(self).__name__)

    async def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    @abc.abstractmethod
    async def run_batch(self, requests: Sequence[Any]) -> list[Any]:
        """Run one batch; return one result per request, in order."""

    def sample_request(self) -> Any:
        """A typical request, for profiling cost against batch size (None: not profiled)."""
        return None

    def close(self) -> None:
        """Release the worker thread."""
        self._worker.shutdown(wait=False)
