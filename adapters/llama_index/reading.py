"""What every LlamaIndex recogniser shares: the reading it adds modules to, the recogniser protocol,
fallbacks, and prompts rendered as the LLM's own predict() renders them."""

from __future__ import annotations

import abc
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from llama_index.core.base.llms.types import ChatMessage as LIChatMessage
from llama_index.core.base.llms.types import MessageRole

from teola.adapters.bindings import record_spec
from teola.adapters.llama_index import compat as li
from teola.optimizer.ir import Graph, QueryInput, Ref, Region, Source
from teola.optimizer.ops import EngineId, EngineKind
from teola.optimizer.regions import RegionObserver
from teola.optimizer.values import ChatMessage, Prompt
from teola.runtime.registry import EngineSpec

log = logging.getLogger("teola.adapters.llama_index")

_ROLES = {MessageRole.SYSTEM: "system", MessageRole.USER: "user", MessageRole.ASSISTANT: "assistant"}


class UnsupportedPipelineError(TypeError):
    """``optimize()`` was given an object it cannot read at all."""


def to_prompt(messages: Sequence[LIChatMessage]) -> Prompt:
    """LlamaIndex chat messages as a framework-free ``Prompt``."""
    converted = []
    for message in messages:
        if message.role not in _ROLES:
            raise ValueError(f"Teola's LLM engine takes system, user and assistant messages, got role {message.role.value!r}")
        converted.append(ChatMessage(_ROLES[message.role], message.content or ""))
    return Prompt(messages=tuple(converted))


def render(llm: Any, template: Any, /, **variables: Any) -> Prompt:
    """A template with its variables filled in, as the LLM's predict() would send it."""
    messages, text = li.render(llm, template, **variables)
    return to_prompt(messages) if messages is not None else Prompt(text=text)


@dataclass(frozen=True)
class IndexSource:
    """The vectors a vector index engine must serve, read off a LlamaIndex vector store.

    Either ``ids`` + ``vectors`` (a copy, searched by cosine similarity, as SimpleVectorStore does)
    or ``faiss_index`` (the store's own faiss index, searched in place; ids are positions). ``key``
    names what it serves: the store (for as long as it lives) and, for a copy, which ids.
    """

    key: str
    ids: tuple[str, ...] = ()
    vectors: Any = None
    faiss_index: Any = None

    @property
    def engine(self) -> EngineId:
        """The vector index engine that serves it."""
        return EngineId.of(EngineKind.VECTOR_INDEX, self.key)


@dataclass
class AppReading:
    """What the adapter read: the module graph, the vector indexes it needs as engines, the other
    engines its modules run on that the app must start (the user's own clients' and models'), the
    components that run unoptimized (each with why), and whether that is the whole query engine
    (``whole``: its own ``query`` then reports the query's span). ``query`` is where the
    components being read take their query from: the app's query, or another module's output (a
    chat engine's condensed question). ``answers_its_caller``: the engine read answers the app's
    caller (its answer may stream to them), not another engine; ``stream``: the text stream of
    the answer, where it streams (a streaming synthesizer's last call)."""

    graph: Graph
    indexes: list[IndexSource] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    engines: list[EngineSpec] = field(default_factory=list)
    region: str | None = None  # the span the components being read report under (None: the query's)
    whole: bool = False
    query: Source = QueryInput("query_str")
    answers_its_caller: bool = False
    stream: Ref | None = None

    def span(self, observer: RegionObserver, inputs: Mapping[str, Source], outputs: Mapping[str, Source]) -> str:
        """Declare the span ``observer`` reports, under the current one; return its region's name."""
        name = f"span{len(self.graph.regions) + 1}"
        self.graph.add_region(Region(name, inputs, outputs, observer, self.region))
        return name

    @contextmanager
    def inside(self, region: str | None) -> Iterator[None]:
        """Read the components of the span ``region`` under it."""
        outer, self.region = self.region, region
        try:
            yield
        finally:
            self.region = outer

    @contextmanager
    def asking(self, query: Source) -> Iterator[None]:
        """Read the components inside as taking their query from ``query``."""
        outer, self.query = self.query, query
        try:
            yield
        finally:
            self.query = outer

    def needs(self, spec: EngineSpec | None) -> None:
        """Record that the app's modules run on the engine ``spec`` (None: one that runs already)."""
        record_spec(self.engines, spec)

    def take(self, sub: "AppReading") -> None:
        """Record what ``sub``, the reading of a part read on its own (a router's candidate engine),
        needs: its vector indexes, its engines, its fallbacks."""
        self.indexes += [index for index in sub.indexes if index.key not in {i.key for i in self.indexes}]
        for spec in sub.engines:
            self.needs(spec)
        self.fallbacks += sub.fallbacks

    def fallback(self, component: Any, why: str) -> None:
        """Record (and log, once) that ``component`` runs unoptimized, as one call, and why."""
        message = f"{type(component).__name__} runs unoptimized, as one call: {why}"
        log.warning("teola: %s", message)
        self.fallbacks.append(message)


ReadInner = Callable[[AppReading, Any, Ref, str], Ref]
"""How a recogniser reads a query engine another one asks (``query_engine.read_inner_engine``): the
reading, the engine, the query it is asked, the name prefix it goes under; returns its response."""


class Recogniser(abc.ABC):
    """One family of LlamaIndex components Teola lowers into modules.

    ``accepts``: whether a component is of the family at all; ``why_not``: why an accepted one
    cannot be lowered (None: it can); ``read``, defined by each family for its place in a pipeline
    (retriever, postprocessor, synthesizer, query transform), adds its modules to an ``AppReading``.
    """

    family: str

    @abc.abstractmethod
    def accepts(self, component: Any) -> bool:
        """Whether ``component`` is of this family."""

    @abc.abstractmethod
    def why_not(self, component: Any) -> str | None:
        """Why ``component`` (accepted) cannot be lowered, or None."""


def recognise(recognisers: Sequence[Recogniser], component: Any) -> tuple[Recogniser | None, str]:
    """The recogniser that lowers ``component``, or None and why none does."""
    for recogniser in recognisers:
        if recogniser.accepts(component):
            why = recogniser.why_not(component)
            return (None, why) if why else (recogniser, "")
    return None, f"Teola lowers {' and '.join(r.family for r in recognisers)} so far"
