"""The IR: a graph of nodes, plain data, backed by networkx.

One ``Graph`` type serves both levels. A *module graph* (what an adapter reads out of a user's
pipeline) holds nodes whose op is a module kind (``retrieve``, ``synthesize`` ...); a *primitive
graph* (what lowering produces and passes rewrite) holds nodes whose op is a primitive (``embed``,
``search``, ``prefill`` ...). A node names its inputs as references to another node's output or to
a query input, so data edges are explicit and the graph can be checked in one place (``lint``).
Nothing here runs anything: callables in ``params`` are data for the runtime, like torch.fx targets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping

import networkx as nx


class Op(str, enum.Enum):
    """Task primitives: what the runtime can dispatch to an engine."""

    EMBED = "embed"
    SEARCH = "search"
    RERANK = "rerank"
    PROMPT = "prompt"
    PREFILL = "prefill"
    DECODE = "decode"
    PARSE = "parse"
    FUSE = "fuse"
    CALL = "call"


class ModuleKind(str, enum.Enum):
    """Modules: what an adapter recognises in a framework pipeline."""

    RETRIEVE = "retrieve"
    POSTPROCESS = "postprocess"
    SYNTHESIZE = "synthesize"
    GENERATE = "generate"
    FUSE = "fuse"
    CALL = "call"


class EngineKind(str, enum.Enum):
    """The kinds of engine a primitive runs on."""

    LLM = "llm"
    EMBEDDING = "embedding"
    VECTOR_INDEX = "vector_index"
    RERANKER = "reranker"
    CALLABLE = "callable"


# Which engine kind runs each primitive. Local work (prompt building, parsing, fusing, opaque
# framework calls) runs on the callable pool so it never blocks the event loop.
OP_ENGINE: Mapping[Op, EngineKind] = {
    Op.EMBED: EngineKind.EMBEDDING,
    Op.SEARCH: EngineKind.VECTOR_INDEX,
    Op.RERANK: EngineKind.RERANKER,
    Op.PROMPT: EngineKind.CALLABLE,
    Op.PREFILL: EngineKind.LLM,
    Op.DECODE: EngineKind.LLM,
    Op.PARSE: EngineKind.CALLABLE,
    Op.FUSE: EngineKind.CALLABLE,
    Op.CALL: EngineKind.CALLABLE,
}


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
    """One module or primitive: an op, the engine that runs it, named inputs and outputs, params.

    ``engine`` names the engine instance (e.g. ``"llm"``, ``"index:3f2a"``); ``params`` holds what
    the op needs beyond its inputs (``top_k``, ``max_tokens``, or a framework callable for ``call``).
    ``after`` names nodes this one waits for without reading them: the order the framework runs
    its modules in, which dependency pruning drops wherever no data flows.
    """

    name: str
    op: Op | ModuleKind
    inputs: Mapping[str, Source]
    outputs: tuple[str, ...]
    engine: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()

    def with_inputs(self, **inputs: Source) -> "Node":
        """A copy of this node with some inputs replaced."""
        return replace(self, inputs={**self.inputs, **inputs})

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.inputs.items())
        engine = f" @{self.engine}" if self.engine else ""
        after = f" after {', '.join(self.after)}" if self.after else ""
        streamed = " streamed" if self.params.get("stream") else ""
        return f"{', '.join(self.outputs)} = {self.name}:{self.op.value}({args}){engine}{streamed}{after}"


class Graph:
    """A dataflow graph of nodes with named query inputs and named graph outputs."""

    def __init__(self, inputs: tuple[str, ...] = ("query_str",)) -> None:
        self.inputs: tuple[str, ...] = tuple(inputs)
        self.outputs: dict[str, Ref] = {}
        self._nodes: dict[str, Node] = {}

    def add(self, node: Node) -> Node:
        """Add ``node``; its name must be new."""
        if node.name in self._nodes:
            raise GraphError(f"node {node.name!r} already exists; give each node a unique name")
        self._nodes[node.name] = node
        return node

    def replace(self, node: Node) -> None:
        """Replace the node of the same name."""
        if node.name not in self._nodes:
            raise GraphError(f"no node {node.name!r} to replace")
        self._nodes[node.name] = node

    def remove(self, name: str) -> None:
        """Remove a node (callers re-point its consumers first)."""
        del self._nodes[name]

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
        other._nodes = dict(self._nodes)
        return other

    def to_networkx(self) -> nx.DiGraph:
        """The dependency view: an edge u -> v for every input of v that reads an output of u
        (``kind="data"``) and for every node u that v runs ``after`` (``kind="order"``)."""
        dag = nx.DiGraph()
        for node in self:
            dag.add_node(node.name, op=node.op.value, engine=node.engine)
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
        """Check the invariants: known ops of one level, resolvable references, acyclic, outputs set."""
        for node in self:
            if level is not None and not isinstance(node.op, level):
                raise GraphError(f"node {node.name!r} has op {node.op!r}, not a {level.__name__}")
            for arg, source in node.inputs.items():
                self._check_source(source, f"input {arg!r} of node {node.name!r}")
            for before in node.after:
                if before not in self._nodes:
                    raise GraphError(f"node {node.name!r} runs after {before!r}, but there is no such node")
        if not self.outputs:
            raise GraphError("the graph has no outputs; call set_output() for what a query returns")
        for name, source in self.outputs.items():
            self._check_source(source, f"graph output {name!r}")
        if not nx.is_directed_acyclic_graph(self.to_networkx()):
            cycle = nx.find_cycle(self.to_networkx())
            raise GraphError(f"the graph has a cycle: {cycle}")

    def _check_source(self, source: Source, where: str) -> None:
        if isinstance(source, QueryInput):
            if source.name not in self.inputs:
                raise GraphError(f"{where} reads query input {source.name!r}; the graph's inputs are {self.inputs}")
        elif source.node not in self._nodes:
            raise GraphError(f"{where} reads {source}, but there is no node {source.node!r}")
        elif source.output not in self._nodes[source.node].outputs:
            raise GraphError(f"{where} reads {source}; node {source.node!r} outputs {self._nodes[source.node].outputs}")

    def __str__(self) -> str:
        lines = [f"graph({', '.join(self.inputs)}):"]
        lines += [f"  {node}" for node in self.topological_order()]
        lines += [f"  return {name} = {source}" for name, source in self.outputs.items()]
        return "\n".join(lines)
