"""Regions: the parts of an app that a tracing tool shows as one run or span.

A framework reports what a pipeline does as a tree: LlamaIndex spans and instrumentation events
(query, retrieve, synthesize, LLM call), LangChain callback runs (sequence, parallel, retriever,
prompt, model, parser). Lowering dissolves the modules those came from into primitives, so the
adapter that read the app declares them apart, as regions: each region names the values it starts
on and ends with (sources in the graph, like a node's inputs), its parent region, and an
``observer``, the framework's own code that reports it (opens the run, closes it, reports an error).

The runtime starts a region once its inputs are all available (when the native framework could
have started it), after its parent, and ends it once its outputs are, after its children: the
tree, its names and its payloads are the framework's, its times are when Teola had the values.
Nothing here runs anything: observers are data for the runtime, like a node's callables.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Mapping

if TYPE_CHECKING:
    from teola.optimizer.ir import Source


class RegionObserver(abc.ABC):
    """Reports one region to the framework's tracing. Each method may return an awaitable.

    ``active`` says whether anybody listens in this query (no handler, or a region the framework
    reports in other queries only: the runtime skips the region, and its children go under its
    parent); ``applies`` whether the framework would run it on the input values it got; ``start``
    opens the region under ``parent`` (the parent region's handle, or None for a top-level region,
    which finds the query's own run in ``query``, the query's inputs) and returns this region's
    handle; ``end`` closes it with its output values; ``fail`` with the error that kept it from
    finishing; ``delta`` hears a streamed output grow; ``enter`` places work run as-is in it.
    """

    def active(self, query: Mapping[str, Any]) -> bool:
        """Whether the query's tracing listens (default: always)."""
        return True

    def applies(self, inputs: Mapping[str, Any]) -> bool:
        """Whether the framework would run the region on these input values (default: always; a
        region on one item of a batch does not when fewer items came)."""
        return True

    @abc.abstractmethod
    def start(self, parent: Any, inputs: Mapping[str, Any], query: Mapping[str, Any]) -> Any | Awaitable[Any]:
        """Open the region; return its handle (what its children get as ``parent``)."""

    @abc.abstractmethod
    def end(self, handle: Any, outputs: Mapping[str, Any]) -> None | Awaitable[None]:
        """Close the region with its outputs."""

    @abc.abstractmethod
    def fail(self, handle: Any, error: BaseException) -> None | Awaitable[None]:
        """Close the region with the error that kept its outputs from coming."""

    def delta(self, handle: Any, key: str, piece: str) -> None | Awaitable[None]:
        """The streamed output ``key`` grew by ``piece`` (default: nothing to report)."""

    def enter(self, handle: Any) -> None:
        """Make the framework code the calling task runs from now on report under the open region
        ``handle`` (a node placed in the region: ``Node.region``); default: nothing to do."""


@dataclass(frozen=True)
class Region:
    """One run or span of the app as its framework reports it.

    ``inputs`` and ``outputs`` are graph sources by name (a streamed text is read whole);
    ``parent`` the enclosing region's name (None: under the query's own run). A region of a module
    graph may read any output of its module's lowered chain by name (a generate's raw ``text``
    behind its parse); lowering points it at the primitive that produces it.
    """

    name: str
    inputs: Mapping[str, Source]
    outputs: Mapping[str, Source]
    observer: RegionObserver
    parent: str | None = None

    def sources(self) -> list[Source]:
        """Every source the region reads."""
        return [*self.inputs.values(), *self.outputs.values()]
