"""The graph scheduler: runs one query's primitive graph, each primitive as soon as its inputs are ready.

Every node is one asyncio task that awaits the futures of the outputs it reads and holds no other
(what a query answered is freed once its caller drops it, whatever of the query still runs); there is
no polling loop. A node's input values become a typed engine request (``teola.runtime.dispatch``) named
``<query>:<node>``, sent to the node's engine with the priority its ``SchedulingPolicy`` gives it
(by default ``(query priority, -depth)``, depth the longest path from the primitive to the graph's
outputs: engines serve the work farthest from an answer first, the paper's topology-aware
batching). A node that fails fails the query with a ``PrimitiveError`` naming it, and the query's
remaining primitives are cancelled; other queries are untouched. The scheduler records when each
primitive started and ended (``QueryTrace``), which benchmarks and timelines read.

The plan's regions (what the app's framework reports to its tracing) are reported as the query
runs (``teola.runtime.region_watch``); the query returns once they have ended, but for those on a
streamed answer, which end with it.

A node with ``meta.stream`` (a streaming decode) publishes a ``TextStream`` as its output as soon
as it starts and fills it while it runs, so its consumers start on the first items; with
``meta.stop_after`` it stops once the parse finds that many final items, as nothing downstream
reads further; any other primitive reads it whole, but a framework callable that names it in
``reads_streams`` (it passes the stream on). A framework callable with ``reads_later`` inputs is a
coroutine run on the node's own task, handed those inputs unresolved: it may answer (a streamed
answer picked among several) before the later ones are known. A graph output that is such a stream is returned as soon as it starts (a
streamed answer); its decode goes on filling it after ``run`` has returned, and the nodes after the
decode run on, the stream's reader seeing its end once the regions on them have ended.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import networkx as nx

from teola.optimizer.ir import Graph, Node, Op, QueryInput, Ref, Source
from teola.optimizer.ops import FnArgs
from teola.optimizer.values import SKIPPED, Failed
from teola.runtime.dispatch import rule_for
from teola.runtime.engine_scheduler import EngineScheduler
from teola.runtime.errors import PrimitiveError, TeolaRuntimeError, original_error
from teola.runtime.policy import CriticalPathFirst, SchedulingPolicy
from teola.runtime.region_watch import RegionWatch
from teola.runtime.streams import TextStream, complete_items


@dataclass(frozen=True)
class PrimitiveSpan:
    """When one primitive of one query ran, relative to the query's start, in seconds."""

    node: str
    op: str
    engine: str
    start: float
    end: float


@dataclass
class QueryTrace:
    """The spans of one query's primitives, in completion order, and the primitives running now."""

    spans: list[PrimitiveSpan] = field(default_factory=list)
    total: float = 0.0
    running: set[str] = field(default_factory=set)

    def unfinished(self) -> list[str]:
        """The primitives that started and have not ended, by name."""
        return sorted(self.running)


class GraphScheduler:
    """Executes a primitive graph (a plan) on the given engine schedulers, one ``run`` per query.

    What depends only on the plan (order, ranks, engine check) is computed once here; each
    ``run`` holds its own query's futures, tasks and trace, so queries never share state.
    """

    def __init__(self, plan: Graph, engines: Mapping[str, EngineScheduler],
                 policy: SchedulingPolicy = CriticalPathFirst()) -> None:
        plan.lint(Op)
        self._rules = {node.name: rule_for(node) for node in plan}  # refuses an op no engine kind serves
        missing = sorted({n.engine.name for n in plan if n.engine.name not in engines})
        if missing:
            raise TeolaRuntimeError(f"the plan needs engines {missing}, but only {sorted(engines)} are running")
        self.plan = plan
        self.engines = engines
        self._order = plan.topological_order()
        dag = plan.to_networkx()
        self._after = {node: nx.descendants(dag, node) for node in dag if plan[node].meta.stream}
        self.policy = policy
        self.ranks = policy.ranks(plan)

    async def run(self, inputs: Mapping[str, Any], priority: int = 0,
                  trace: QueryTrace | None = None) -> tuple[dict[str, Any], QueryTrace]:
        """Run the plan on ``inputs``; return the graph outputs and the query's trace (its ``total``
        is the time to the outputs: to the first text of a streamed one). A ``trace`` given is
        filled as the query runs. Cancelling ``run`` cancels every primitive of the query."""
        unknown = set(self.plan.inputs) - set(inputs)
        if unknown:
            raise TeolaRuntimeError(f"the query is missing inputs {sorted(unknown)}; the plan takes {self.plan.inputs}")
        loop = asyncio.get_running_loop()
        trace = trace if trace is not None else QueryTrace()
        t0 = time.perf_counter()
        futures = {node.name: _NodeFutures.of(node, loop) for node in self._order}
        query = f"q{next(_query_ids)}"
        regions = RegionWatch(self.plan.regions, inputs) if self.plan.regions else None
        if regions is not None:
            regions.start(lambda sources: functools.partial(_resolve, inputs=inputs, values=_values(sources, futures)))
        tasks = [loop.create_task(self._run_node(node, inputs, futures[node.name], _values(node.inputs.values(), futures),
                                                 [futures[before].ended for before in node.after], trace, t0, priority,
                                                 query, regions))
                 for node in self._order]
        streaming: set[str] = set()
        try:
            outputs = {}
            for name, ref in self.plan.outputs.items():
                outputs[name] = await futures[ref.node].outputs[ref.output]
            streams = [value for value in outputs.values() if isinstance(value, TextStream)]
            streaming = self._finishing_after(streams)
            if regions is not None:  # they end before the query does (those on a streamed answer: with it), and
                regions.leave_to_streams(streaming, streams)  # before the nodes left running, which some may read,
                await regions.settle()  # are cancelled
        finally:
            for node, task in zip(self._order, tasks):
                if node.name in streaming:  # a streamed output's decode keeps filling it, and what reads it finishes
                    for future in futures[node.name].all():
                        future.add_done_callback(_retrieved)
                else:
                    task.cancel()
            for node_futures in futures.values():  # a failed branch nobody awaited must not warn
                for future in node_futures.all():
                    if future.done() and not future.cancelled():
                        future.exception()
            if regions is not None:  # after a failure: the regions fail once the nodes they wait for are cancelled
                await regions.settle()
        trace.total = time.perf_counter() - t0
        return outputs, trace

    def _finishing_after(self, streams: list[TextStream]) -> set[str]:
        """This plan's decodes filling ``streams`` and every node after them: they run on after ``run`` returns."""
        decodes = {stream.node for stream in streams if stream.node in self._after}
        return decodes.union(*(self._after[decode] for decode in decodes))

    async def _run_node(self, node: Node, inputs: Mapping[str, Any], own: _NodeFutures, values: _Values,
                        before: list[asyncio.Future], trace: QueryTrace, t0: float, priority: int, query: str,
                        regions: RegionWatch | None) -> None:
        """Run ``node`` once what it reads (``values``: its inputs' futures, and no other) and the nodes it
        runs after (``before``) have ended; settle ``own``."""
        try:
            for ended in before:
                await asyncio.shield(ended)
            fn_args = node.args if isinstance(node.args, FnArgs) else None
            caught, later = (fn_args.catches, fn_args.reads_later) if fn_args else ((), ())
            args = {arg: await (_resolve_caught if arg in caught else _resolve)(source, inputs, values)
                    for arg, source in node.inputs.items() if arg not in later}
            if any(v is SKIPPED and arg not in _runs_without(node) for arg, v in args.items()):
                own.set({out: SKIPPED for out in node.outputs})
                return
            if node.op is not Op.PARSE and any(isinstance(v, TextStream) for v in args.values()):
                # a parse reads the items it needs of a stream; anything else its whole text, unless it takes streams
                takes = fn_args.reads_streams if fn_args else ()
                args = {arg: await v.whole() if isinstance(v, TextStream) and arg not in takes else v
                        for arg, v in args.items()}
            placed = await regions.placement(node.region) if regions is not None and node.region else None
            if placed is not None:  # the framework code it runs reports under the region (this task's context only)
                placed[0].enter(placed[1])
            start = time.perf_counter() - t0
            trace.running.add(node.name)
            try:
                if later:  # a coroutine run here, not a request to the callable pool
                    value = await fn_args.fn(**args, **{arg: _Later(node.inputs[arg], inputs, values) for arg in later})
                    own.set(_as_outputs(node, value))
                else:
                    await self._send(node, args, f"{query}:{node.name}", priority, own)
            except (asyncio.CancelledError, PrimitiveError):
                raise
            except Exception as exc:
                raise PrimitiveError(node.name, node.op.value, node.engine.name, exc) from exc
            finally:
                trace.running.discard(node.name)
            trace.spans.append(PrimitiveSpan(node.name, node.op.value, node.engine.name, start,
                                             time.perf_counter() - t0))
        except asyncio.CancelledError:
            own.cancel()
            raise
        except BaseException as exc:
            own.fail(exc)

    async def _send(self, node: Node, args: Mapping[str, Any], request_id: str, priority: int,
                    own: _NodeFutures) -> None:
        """Send the node's request to its engine; set its outputs (a streaming decode's at once)."""
        rule = self._rules[node.name]
        request = rule.request_for(node, args, request_id, self.policy.priority(priority, self.ranks[node.name]))
        engine = self.engines[node.engine.name]
        if node.meta.stream:
            await self._stream(node, engine, request, own)
        else:
            own.set(_as_outputs(node, rule.value_of(node, await engine.execute(request))))

    async def _stream(self, node: Node, engine: EngineScheduler, request: Any, own: _NodeFutures) -> None:
        """Publish the node's ``TextStream`` at once, then fill it from the engine's deltas."""
        stream = TextStream(producer=asyncio.current_task(), node=node.name)
        own.set({node.outputs[0]: stream})
        stop_after = node.meta.stop_after
        deltas = None
        error: BaseException | None = None
        try:
            deltas = engine.stream(request)
            async for delta in deltas:
                await stream.push(delta)
                if stop_after and len(complete_items(stop_after.parse, stream.text, False)) >= stop_after.items:
                    break
        except Exception as exc:
            error = PrimitiveError(node.name, node.op.value, node.engine.name, exc)
            raise error from exc
        finally:
            if deltas is not None:
                await deltas.aclose()  # an engine stream left early aborts its request
            await stream.finish(error)


_query_ids = itertools.count()


def _retrieved(future: asyncio.Future) -> None:
    """Read the outcome of a node left running after ``run`` returned (its failure is the stream's)."""
    if not future.cancelled():
        future.exception()


def _runs_without(node: Node) -> tuple[str, ...]:
    """The inputs ``node`` runs without (reading ``SKIPPED``)."""
    return node.args.runs_on_skipped if isinstance(node.args, FnArgs) else ()


_Values = Mapping[tuple[str, str], asyncio.Future]  # (node, output): the future of that output's value


@dataclass(frozen=True)
class _NodeFutures:
    """One node's futures in one query: one per output, and ``ended``, done once they are (with the
    node's error where it failed)."""

    outputs: dict[str, asyncio.Future]
    ended: asyncio.Future

    @staticmethod
    def of(node: Node, loop: asyncio.AbstractEventLoop) -> _NodeFutures:
        return _NodeFutures({out: loop.create_future() for out in node.outputs}, loop.create_future())

    def all(self) -> tuple[asyncio.Future, ...]:
        return (*self.outputs.values(), self.ended)

    def set(self, values: Mapping[str, Any]) -> None:
        for out, future in self.outputs.items():
            future.set_result(values[out])
        self.ended.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """Fail what is not set yet (a streaming decode's output is its stream's to fail)."""
        for future in self.all():
            if not future.done():
                future.set_exception(exc)

    def cancel(self) -> None:
        for future in self.all():
            future.cancel()


def _values(sources: Iterable[Source], futures: Mapping[str, _NodeFutures]) -> dict[tuple[str, str], asyncio.Future]:
    """The futures of the node outputs ``sources`` read."""
    return {(s.node, s.output): futures[s.node].outputs[s.output] for s in sources if isinstance(s, Ref)}


async def _resolve(source: Source, inputs: Mapping[str, Any], values: _Values) -> Any:
    """The value an input reads: a query input, another node's output, or a slice of a list output."""
    if isinstance(source, QueryInput):
        return inputs[source.name]
    value = await asyncio.shield(values[source.node, source.output])
    if source.items is None or value is SKIPPED:
        return value
    return value[source.items[0]:source.items[1]]


async def _resolve_caught(source: Source, inputs: Mapping[str, Any], values: _Values) -> Any:
    """The value an input reads, or the failure of what it reads as a ``Failed`` value (for a node that catches it)."""
    try:
        return await _resolve(source, inputs, values)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return Failed(original_error(exc))


class _Later:
    """An input a framework callable reads when it needs it (``FnArgs.reads_later``): awaiting it
    gives its value, a stream as soon as it starts."""

    def __init__(self, source: Source, inputs: Mapping[str, Any], values: _Values) -> None:
        self._source, self._inputs, self._values = source, inputs, values

    def __await__(self) -> Any:
        return _resolve(self._source, self._inputs, self._values).__await__()


def _as_outputs(node: Node, value: Any) -> dict[str, Any]:
    """A single-output node's value is the output; a multi-output node returns a mapping."""
    if len(node.outputs) == 1:
        return {node.outputs[0]: value}
    if not isinstance(value, Mapping) or set(value) != set(node.outputs):
        raise PrimitiveError(node.name, node.op.value, node.engine.name,
                             TypeError(f"expected a mapping with keys {node.outputs}, got {type(value).__name__}"))
    return dict(value)

