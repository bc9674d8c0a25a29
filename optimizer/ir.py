"""The IR: a graph of nodes, plain data, backed by networkx.

One ``Graph`` type serves both levels. A *module graph* (what an adapter reads out of a user's
pipeline) holds nodes whose op is a module kind (``retrieve``, ``synthesize`` ...); a *primitive
graph* (what lowering produces and passes rewrite) holds nodes whose op is a primitive (``embed``,
``search``, ``prefill`` ...). A node names its inputs as references to another node's output or to
a query input, so data edges are explicit and the graph can be checked in one place (``lint``).
Every node's arguments are a typed dataclass of its op (``teola.optimizer.ops``) and what passes
decide sits apart in its ``meta``. Nothing here runs anything: callables in arguments are data for
the runtime, like torch.fx targets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator, Mapping

import networkx as nx

from teola.optimizer.ops import NO_META, EngineId, EngineKind, Meta, ModuleKind, Op, OpArgs, schema_of
from teola.optimizer.regions import Region

__all__ = ["EngineId", "EngineKind", "Graph", "GraphError", "Meta", "ModuleKind", "Node", "Op", "QueryInput", "Ref",
           "Region", "Source"]


class GraphError(ValueError):
    """A graph breaks an invariant of the IR; the message names the node and the fix."""


@dataclass(frozen=True)
class Ref:
    """A reference to the output ``output`` of node ``node``.

    With ``items=(start, stop)`` it reads only that slice of a list-valued output: what a
    sub-batch of a split primitive works on.
    """

    node: str
    output: str
    items: tuple[int, int] | None = None

    def __str__(self) -> str:
        part = f"[{self.items[0]}:{self.items[1]}]" if self.items else ""
        return f"{self.node}.{self.output}{part}"


@dataclass(frozen=True)
class QueryInput:
    """A reference to one of the query's own inputs (``query_str`` ...)."""

    name: str

    def __str__(self) -> str:
        return f"query.{self.name}"


Source = Ref | QueryInput


@dataclass(frozen=True)
class Node:
    """One module or primitive: an op, its typed arguments, named inputs and outputs, the engine.

    ``args`` is the op's argument dataclass (``SCHEMAS[op].args``); ``engine`` the engine instance
    a primitive runs on (None for a module, whose arguments name its engines); ``meta`` what passes
    decided. ``after`` names nodes this one waits for without reading them: the order the framework
    runs its modules in, which dependency pruning drops wherever no data flows. ``region``: the
    region (``teola.optimizer.regions``) the framework code this node runs as-is belongs in; what
    that code reports of itself goes under the region, or the closest one reported above it.
    """

    name: str
    op: Op | ModuleKind
    inputs: Mapping[str, Source]
    outputs: tuple[str, ...]
    args: OpArgs
    engine: EngineId | None = None
    after: tuple[str, ...] = ()
    meta: Meta = NO_META
    region: str | None = None

    def with_inputs(self, **inputs: Source) -> "Node":
        """A copy of this node with some inputs replaced."""
        return replace(self, inputs={**self.inputs, **inputs})

    def with_meta(self, **decided: object) -> "Node":
        """A copy of this node with some of its ``meta`` decided anew."""
        return replace(self, meta=replace(self.meta, **decided))

    @property
    def batched(self) -> bool:
        """Whether the node works item by item over list inputs."""
        return self.args.batch

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.inputs.items())
        engine = f" @{self.engine}" if self.engine else ""
        after = f" after {', '.join(self.after)}" if self.after else ""
        streamed = " streamed" if self.meta.stream else ""
        return f"{', '.join(self.outputs)} = {self.name}:{self.op.value}({args}){engine}{streamed}{after}"


class Graph:
    """A dataflow graph of nodes with named query inputs and named graph outputs, and the regions
    (``teola.optimizer.regions``) its framework's tracing reports."""

    def __init__(self, inputs: tuple[str, ...] = ("query_str",)) -> None:
        self.inputs: tuple[str, ...] = tuple(inputs)
        self.outputs: dict[str, Ref] = {}
        self.regions: dict[str, Region] = {}
        self._nodes: dict[str, Node] = {}

    def add(self, node: Node) -> Node:
        """Add ``node``; its name must be new."""
        if node.name in self._nodes:
            raise GraphError(f"node {node.name!r} already exists; give each node a unique name")
        self._nodes[node.name] = node
        return node

    def add_region(self, region: Region) -> Region:
        """Declare a region; its name must be new and its parent declared before it."""
        if region.name in self.regions:
            raise GraphError(f"region {region.name!r} already exists; give each region a unique name")
        if region.parent is not None and region.parent not in self.regions:
            raise GraphError(f"region {region.name!r} is under {region.parent!r}, which is not declared (yet)")
        self.regions[region.name] = region
        return region

    def replace(self, node: Node) -> None:
        """Replace the node of the same name (its readers then read the new node's outputs, which
        must include every output they read)."""
        if node.name not in self._nodes:
            raise GraphError(f"no node {node.name!r} to replace")
        read = {s.output for n in self for s in n.inputs.values() if isinstance(s, Ref) and s.node == node.name}
        read |= {s.output for s in self.outputs.values() if s.node == node.name}
        read |= {s.output for s in self._region_sources() if s.node == node.name}
        if read - set(node.outputs):
            raise GraphError(f"node {node.name!r} is read for outputs {sorted(read - set(node.outputs))} "
                             f"that its replacement does not have {node.outputs}")
        self._nodes[node.name] = node

    def erase(self, name: str) -> None:
        """Remove a node nothing uses any more (re-point its readers first: ``replace_all_uses``)."""
        users = sorted({n.name for n in self.consumers(name)} | {n.name for n in self if name in n.after})
        users += [f"region {r}" for r in self.region_readers(name)]
        if users or any(s.node == name for s in self.outputs.values()):
            raise GraphError(f"cannot erase {name!r}: {users or 'a graph output'} still use it")
        del self._nodes[name]

    def keep_regions(self, keep: Callable[[Region], bool]) -> None:
        """Keep only the regions ``keep`` accepts whose ancestors it accepts too."""
        kept: dict[str, Region] = {}
        for region in self.regions.values():  # parents are declared before their children
            if keep(region) and (region.parent is None or region.parent in kept):
                kept[region.name] = region
        self.regions = kept

    def _region_sources(self) -> list[Ref]:
        return [s for r in self.regions.values() for s in r.sources() if isinstance(s, Ref)]

    def region_readers(self, name: str) -> list[str]:
        """The regions that read an output of node ``name``, by name."""
        return sorted(r.name for r in self.regions.values() if any(isinstance(s, Ref) and s.node == name for s in r.sources()))

    def map_region_sources(self, move: Callable[[Source], Source]) -> None:
        """Make every region read ``move(source)`` for each source it reads (a pass that splits a node
        points the regions that read one of its items at the part that computes it)."""
        for name, region in list(self.regions.items()):
            self.regions[name] = replace(region, inputs={k: move(s) for k, s in region.inputs.items()},
                                         outputs={k: move(s) for k, s in region.outputs.items()})

    def replace_all_uses(self, old: Ref, new: Source) -> None:
        """Make every reader of ``old`` (nodes and graph outputs) read ``new`` instead."""
        for node in list(self):
            moved = {arg: new for arg, s in node.inputs.items() if s == old}
            if moved:
                self._nodes[node.name] = node.with_inputs(**moved)
        for name, source in list(self.outputs.items()):
            if source == old:
                if not isinstance(new, Ref):
                    raise GraphError(f"graph output {name!r} must read a node's output, not {new}")
                self.outputs[name] = new

    def fresh_name(self, base: str) -> str:
        """``base``, or ``base`` with the first free ``#n`` suffix: a new node's name."""
        name, n = base, 1
        while name in self._nodes:
            name, n = f"{base}#{n}", n + 1
        return name

    def inline(self, sub: "Graph", prefix: str, inputs: Mapping[str, Source], region: str | None = None) -> dict[str, Ref]:
        """Add ``sub``'s nodes and regions, each name prefixed with ``prefix``: its query inputs read
        ``inputs`` (a source of this graph for each), and what ran under the query's own run in it runs
        under ``region`` here. Returns ``sub``'s outputs as references into this graph."""
        missing = set(sub.inputs) - set(inputs)
        if missing:
            raise GraphError(f"inlining under {prefix!r} needs a source for the sub-graph's inputs {sorted(missing)}")
        if region is not None and region not in self.regions:
            raise GraphError(f"inlining under {prefix!r} into region {region!r}, which is not declared")

        def moved(source: Source) -> Source:
            return inputs[source.name] if isinstance(source, QueryInput) else replace(source, node=prefix + source.node)

        for sub_region in sub.regions.values():  # parents come first
            self.add_region(replace(sub_region, name=prefix + sub_region.name,
                                    inputs={k: moved(s) for k, s in sub_region.inputs.items()},
                                    outputs={k: moved(s) for k, s in sub_region.outputs.items()},
                                    parent=region if sub_region.parent is None else prefix + sub_region.parent))
        for node in sub:
            self.add(replace(node, name=prefix + node.name, inputs={k: moved(s) for k, s in node.inputs.items()},
                             after=tuple(prefix + before for before in node.after),
                             region=region if node.region is None else prefix + node.region))
        return {name: replace(source, node=prefix + source.node) for name, source in sub.outputs.items()}

    def set_output(self, name: str, source: Ref) -> None:
        """Declare a graph output."""
        self.outputs[name] = source

    def __getitem__(self, name: str) -> Node:
        return self._nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def copy(self) -> "Graph":
        """A shallow copy (nodes are immutable, so this is all a pass needs)."""
        other = Graph(self.inputs)
        other.outputs = dict(self.outputs)
        other.regions = dict(self.regions)
        other._nodes = dict(self._nodes)
        return other

    def to_networkx(self) -> nx.DiGraph:
        """The dependency view: an edge u -> v for every input of v that reads an output of u
        (``kind="data"``) and for every node u that v runs ``after`` (``kind="order"``)."""
        dag = nx.DiGraph()
        for node in self:
            dag.add_node(node.name, op=node.op.value, engine=str(node.engine or ""))
        for node in self:
            for before in node.after:
                dag.add_edge(before, node.name, kind="order")
            for source in node.inputs.values():
                if isinstance(source, Ref):
                    dag.add_edge(source.node, node.name, kind="data")
        return dag

    def topological_order(self) -> list[Node]:
        """Nodes in an order where every node follows the nodes it reads from."""
        return [self._nodes[name] for name in nx.lexicographical_topological_sort(self.to_networkx())]

    def consumers(self, name: str) -> list[Node]:
        """Nodes that read any output of ``name``."""
        return [n for n in self if any(isinstance(s, Ref) and s.node == name for s in n.inputs.values())]

    def lint(self, level: type[Op] | type[ModuleKind] | None = None) -> None:
        """Check the invariants: every node's op of ``level``, its arguments, engine, inputs and meta
        as its op's schema says; resolvable references; acyclic; outputs set."""
        for node in self:
            if level is not None and not isinstance(node.op, level):
                raise GraphError(f"node {node.name!r} has op {node.op!r}, not a {level.__name__}")
            _check_schema(node)
            for arg, source in node.inputs.items():
                self._check_source(source, f"input {arg!r} of node {node.name!r}")
            for before in node.after:
                if before not in self._nodes:
                    raise GraphError(f"node {node.name!r} runs after {before!r}, but there is no such node")
            for field, what in (("catches", "catches the failure of"), ("runs_on_skipped", "runs without"),
                                ("reads_streams", "reads as streams"), ("reads_later", "reads later")):
                unknown = set(getattr(node.args, field, ())) - set(node.inputs)
                if unknown:
                    raise GraphError(f"node {node.name!r} {what} inputs {sorted(unknown)} it does not have")
        if not self.outputs:
            raise GraphError("the graph has no outputs; call set_output() for what a query returns")
        for name, source in self.outputs.items():
            self._check_source(source, f"graph output {name!r}")
        for region in self.regions.values():
            if region.parent is not None and region.parent not in self.regions:
                raise GraphError(f"region {region.name!r} is under {region.parent!r}, which is not declared")
            for key, source in [*region.inputs.items(), *region.outputs.items()]:
                # a module graph's region may read any output of its module's chain: only the module is checked
                self._check_source(source, f"{key!r} of region {region.name!r}", outputs=level is not ModuleKind)
        if not nx.is_directed_acyclic_graph(self.to_networkx()):
            cycle = nx.find_cycle(self.to_networkx())
            raise GraphError(f"the graph has a cycle: {cycle}")
        self._check_placements(modules=level is ModuleKind)

    def _check_placements(self, modules: bool) -> None:
        """A node runs inside a declared region that starts without it: no input of the region or of
        a region above it comes from the node (its code would wait for a region that waits for it).
        In a module graph a region may start on an earlier step of the module's own chain (a prompt
        before its answer): that is checked once lowered."""
        dag = None
        for node in self:
            region = node.region
            if region is not None and region not in self.regions:
                raise GraphError(f"node {node.name!r} runs inside region {region!r}, which is not declared")
            while region is not None:
                dag = dag if dag is not None else self.to_networkx()
                for source in self.regions[region].inputs.values():
                    if isinstance(source, Ref) and not (modules and source.node == node.name) and \
                            nx.has_path(dag, node.name, source.node):
                        raise GraphError(f"node {node.name!r} runs inside region {node.region!r}, but region "
                                         f"{region!r} starts on {source}, which needs the node: place the node "
                                         f"in a region that starts before it")
                region = self.regions[region].parent

    def _check_source(self, source: Source, where: str, outputs: bool = True) -> None:
        if isinstance(source, QueryInput):
            if source.name not in self.inputs:
                raise GraphError(f"{where} reads query input {source.name!r}; the graph's inputs are {self.inputs}")
        elif source.node not in self._nodes:
            raise GraphError(f"{where} reads {source}, but there is no node {source.node!r}")
        elif outputs and source.output not in self._nodes[source.node].outputs:
            raise GraphError(f"{where} reads {source}; node {source.node!r} outputs {self._nodes[source.node].outputs}")

    def __str__(self) -> str:
        lines = [f"graph({', '.join(self.inputs)}):"]
        lines += [f"  {node}" for node in self.topological_order()]
        lines += [f"  return {name} = {source}" for name, source in self.outputs.items()]
        return "\n".join(lines)


# the ops that may carry each meta (a generate module's stream: its decode's, once lowered)
_META_OPS = {"stream": (Op.DECODE, ModuleKind.GENERATE), "stop_after": (Op.DECODE,), "warm": (Op.PREFILL,),
             "items": (Op.PARSE,)}


def _check_schema(node: Node) -> None:
    """``node`` against its op's schema: argument class, engine kind, inputs, meta."""
    schema = schema_of(node.op)
    if schema is None:
        raise GraphError(f"node {node.name!r} has op {node.op!r}, which no schema defines")
    if type(node.args) is not schema.args:
        raise GraphError(f"node {node.name!r} ({node.op.value}) takes {schema.args.__name__}, "
                         f"got {type(node.args).__name__}")
    if schema.engine is None and node.engine is not None:
        raise GraphError(f"module {node.name!r} names its engines in its arguments, not as engine={node.engine}")
    if schema.engine is not None and (node.engine is None or node.engine.kind is not schema.engine):
        raise GraphError(f"primitive {node.name!r} ({node.op.value}) runs on a {schema.engine.value} engine, "
                         f"not {node.engine!r}")
    missing = schema.required - set(node.inputs)
    extra = set(node.inputs) - schema.required - (schema.optional if schema.optional is not None else set(node.inputs))
    if missing or extra:
        raise GraphError(f"node {node.name!r} ({node.op.value}) must read {sorted(schema.required)}"
                         f"{f' and may read {sorted(schema.optional)}' if schema.optional else ''}; "
                         f"it reads {sorted(node.inputs)}")
    for name, ops in _META_OPS.items():
        if getattr(node.meta, name) not in (None, False) and node.op not in ops:
            raise GraphError(f"node {node.name!r} has meta {name}, which only a {' or a '.join(o.value for o in ops)} "
                             "may have")
    if node.meta.stop_after is not None and not node.meta.stream:
        raise GraphError(f"decode {node.name!r} stops after items but does not stream")
