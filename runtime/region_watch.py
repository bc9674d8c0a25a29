"""Reporting a query's regions to its framework's tracing while the query runs.

Each region of the plan (``teola.optimizer.regions``) whose observer listens in this query gets
one task (a region nobody listens to in this query passes its children to its own parent): it
waits for the region's parent to start and for its inputs, starts it, waits for its outputs (telling
its observer each piece of a streamed one) and for its children to end, then ends it, or fails it
with the error that came instead (the component's own, unwrapped). A region whose inputs never come (a
failed or skipped branch), or whose observer says it does not apply to the values that came, never
starts, as the framework would never have run it (an input skipped settles that at once, the
inputs read in order). A node placed in a region (``Node.region``)
runs its framework code under the region once it has started (``placement``), or under the closest
region above it that is reported, where it is not.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Callable, Iterable, Mapping

from teola.optimizer.ir import Ref, Region, Source
from teola.optimizer.regions import RegionObserver
from teola.optimizer.values import SKIPPED
from teola.runtime.errors import original_error
from teola.runtime.streams import TextStream

Resolve = Callable[[Source], Awaitable[Any]]


async def _maybe(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def _whole(source: Source, resolve: Resolve) -> Any:
    value = await resolve(source)
    return await value.whole() if isinstance(value, TextStream) else value


async def _output(region: Region, handle: Any, key: str, resolve: Resolve) -> Any:
    """An output's value, whole; a stream's pieces are reported to the observer as they come."""
    value = await resolve(region.outputs[key])
    if not isinstance(value, TextStream):
        return value
    async for piece in value.follow():
        await _maybe(region.observer.delta(handle, key, piece))
    return value.text


class RegionWatch:
    """The regions of one query: ``start`` their tasks, ``settle`` waits until they have reported,
    but for those left to the query's streamed answers (``leave_to_streams``)."""

    def __init__(self, regions: Mapping[str, Region], query: Mapping[str, Any]) -> None:
        self._declared = regions
        self._regions = {name: r for name, r in regions.items() if r.observer.active(query)}
        self._query = query
        self._parents: dict[str, str | None] = {}
        self._children: dict[str, list[str]] = {name: [] for name in self._regions}
        for region in self._regions.values():
            parent = region.parent
            while parent is not None and parent not in self._regions:  # not reported here: its children move up
                parent = regions[parent].parent
            self._parents[region.name] = parent
            if parent is not None:
                self._children[parent].append(region.name)
        self._tasks: dict[str, asyncio.Task] = {}
        self._streamed: set[str] = set()  # the regions left to streamed answers, with those above them

    def start(self, resolver: Callable[[Iterable[Source]], Resolve]) -> None:
        """One task per listened-to region, on the running loop, each reading its own sources only
        (``resolver(sources)``), so that a region left to a stream holds no other value of the query."""
        loop = asyncio.get_running_loop()
        self._handles = {name: loop.create_future() for name in self._regions}
        self._ended = {name: loop.create_future() for name in self._regions}
        self._tasks = {name: loop.create_task(self._watch(region, resolver(region.sources())))
                       for name, region in self._regions.items()}

    async def placement(self, region: str | None) -> tuple[RegionObserver, Any] | None:
        """Where code run inside ``region`` reports: the observer and handle of the region once it
        has started or, where it is not reported in this query (nobody listens to it, it did not
        apply, its inputs never came), of the closest region above it that is; None: the query's own."""
        while region is not None:
            if region in self._regions:
                handle = self._handles[region]
                try:
                    return self._regions[region].observer, await asyncio.shield(handle)
                except asyncio.CancelledError:
                    if not handle.cancelled():  # the waiting node itself is cancelled
                        raise
            region = self._declared[region].parent
        return None

    def leave_to_streams(self, nodes: set[str], streams: list[TextStream]) -> None:
        """Leave the regions that read a node of ``nodes`` (the query's streamed answers and what
        finishes after them), those above them (they end after them) and those below them (they
        start after them), to end with the ``streams``: their readers see the end only once these
        regions have; ``settle`` no longer waits for them."""
        reading = [name for name, region in self._regions.items()
                   if any(isinstance(s, Ref) and s.node in nodes for s in region.sources())]
        below = list(reading)
        while below:
            name = below.pop()
            if name not in self._streamed:
                self._streamed.add(name)
                below += self._children[name]
        for name in reading:
            name = self._parents[name]
            while name is not None and name not in self._streamed:
                self._streamed.add(name)
                name = self._parents[name]
        if self._streamed:
            reported = asyncio.gather(*(self._tasks[name] for name in self._streamed), return_exceptions=True)
            for stream in streams:
                stream.hold_end(reported)

    async def settle(self) -> None:
        """Wait until every region not left to a stream has ended, failed or given up (never raises)."""
        now = [task for name, task in self._tasks.items() if name not in self._streamed]
        if now:
            await asyncio.gather(*now, return_exceptions=True)

    async def _watch(self, region: Region, resolve: Resolve) -> None:
        try:
            await self._observe(region, resolve)
        finally:
            if not self._handles[region.name].done():
                self._handles[region.name].cancel()  # its children never start either
            self._ended[region.name].set_result(None)

    async def _observe(self, region: Region, resolve: Resolve) -> None:
        try:
            parent_name = self._parents[region.name]
            parent = await asyncio.shield(self._handles[parent_name]) if parent_name else None
            inputs = {}
            for key, source in region.inputs.items():  # in order: the first one skipped settles it
                inputs[key] = await _whole(source, resolve)
                if inputs[key] is SKIPPED:
                    return
        except (Exception, asyncio.CancelledError):
            return  # its inputs never came (or its parent never started): the framework never runs it
        if not region.observer.applies(inputs):
            return
        handle = await _maybe(region.observer.start(parent, inputs, self._query))
        self._handles[region.name].set_result(handle)
        error: BaseException | None = None
        try:
            outputs = {key: await _output(region, handle, key, resolve) for key in region.outputs}
        except (Exception, asyncio.CancelledError) as exc:
            error = original_error(exc)
        for child in self._children[region.name]:  # a run ends after its children, as natively
            await asyncio.shield(self._ended[child])
        if error is not None:
            await _maybe(region.observer.fail(handle, error))
        else:
            await _maybe(region.observer.end(handle, outputs))
