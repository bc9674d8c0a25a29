"""The IR's vocabulary: ops, engine identities, and each op's typed arguments.

Every node of a graph carries a frozen dataclass of arguments, one class per op (``SearchArgs``
for ``search`` ...), and a ``Meta`` apart for what passes decide (streaming, warming, which items
a parse reads), as torch.fx keeps ``meta`` apart from a node's target and args. ``schema_of`` says
for every op which argument class it takes, which engine kind runs it and which inputs it reads;
``Graph.lint`` checks every node against it, so a wrong op, engine or argument is refused where the
graph is built, not deep in the runtime.
"""

from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from teola.optimizer.values import Sampling


class Op(str, enum.Enum):
    """Task primitives: what the runtime can dispatch to an engine."""

    EMBED = "embed"
    SEARCH = "search"
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
    CALLABLE = "callable"


@dataclass(frozen=True)
class EngineId:
    """One engine instance: its kind and the name the runtime serves it under (``"llm:<model>"`` ...)."""

    kind: EngineKind
    name: str

    def __str__(self) -> str:
        return self.name

    @classmethod
    def of(cls, kind: EngineKind, key: str) -> "EngineId":
        """The engine of ``kind`` that serves ``key`` (a model, or the stable key of an index's data)."""
        return cls(kind, f"{kind.value}:{key}")


# Local work (prompt building, parsing, fusing, framework calls) runs on the runtime's thread pool.
CALLABLE = EngineId(EngineKind.CALLABLE, "callable")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_engine(what: str, engine: object, kind: EngineKind) -> None:
    _check(isinstance(engine, EngineId) and engine.kind is kind, f"{what} must be the EngineId of a {kind.value} engine, "
           f"got {engine!r}")


@dataclass(frozen=True)
class OpArgs:
    """Base of every op's arguments. ``batch``: the op's list inputs hold independent items (one
    embedding, search, prompt ... each) and its output is the list of their results."""

    batch: bool = field(default=False, kw_only=True)


@dataclass(frozen=True)
class FnArgs(OpArgs):
    """A framework callable run with the node's inputs as keyword arguments (``call``, ``fuse``,
    ``postprocess``). ``pure``: it has no side effects, so it may run out of the framework's order;
    ``runs_on_skipped``: the inputs it runs without, reading ``SKIPPED`` (it finishes a skipped branch); a
    ``SKIPPED`` in any other input skips it too;
    ``catches``: the inputs whose failure it reads as a ``Failed`` value instead of failing with it
    (it handles a failed branch, as a framework's try/except does); ``reads_streams``: the inputs it
    takes as a ``TextStream`` while a streaming decode fills it (any other reads the text whole);
    ``reads_later``: the inputs it is handed unresolved, each as an awaitable of its value (a stream
    as it starts), so it can answer before the later ones are known (``fn`` is then a coroutine
    function, run on the query's own task)."""

    fn: Callable[..., Any]
    label: str = ""
    pure: bool = False
    runs_on_skipped: tuple[str, ...] = ()
    catches: tuple[str, ...] = ()
    reads_streams: tuple[str, ...] = ()
    reads_later: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(callable(self.fn), f"fn must be callable, got {type(self.fn).__name__}")
        _check(not self.reads_later or inspect.iscoroutinefunction(self.fn),
               f"a callable that reads inputs later ({self.reads_later}) must be a coroutine function")
        for what in ("runs_on_skipped", "catches", "reads_streams", "reads_later"):
            _check(isinstance(getattr(self, what), tuple),
                   f"{what} must be a tuple of input names, got {getattr(self, what)!r}")


@dataclass(frozen=True)
class EmbedArgs(OpArgs):
    """``embed``: the vector of input ``text`` (or of each text, with ``batch``)."""


@dataclass(frozen=True)
class SearchArgs(OpArgs):
    """``search``: the ``top_k`` nearest hits ``[(id, score), ...]`` of input ``vector``."""

    top_k: int

    def __post_init__(self) -> None:
        _check(isinstance(self.top_k, int) and self.top_k > 0, f"top_k must be a positive int, got {self.top_k!r}")


@dataclass(frozen=True)
class PrefixSpec:
    """How to build the early-known prefix of a prompt (a ``PromptPrefix``) from ``inputs`` alone."""

    build: Callable[..., Any]
    inputs: tuple[str, ...]

    def __post_init__(self) -> None:
        _check(callable(self.build) and bool(self.inputs), "a prefix needs a callable and the inputs it reads")


@dataclass(frozen=True)
class PromptArgs(OpArgs):
    """``prompt``: ``build`` turns the inputs into a ``Prompt`` (or, with ``batch``, a list of them);
    ``prefix`` says how its early part can be built sooner (what prefill splitting uses)."""

    build: Callable[..., Any]
    prefix: PrefixSpec | None = None

    def __post_init__(self) -> None:
        _check(callable(self.build), "build must be callable")


@dataclass(frozen=True)
class PrefillArgs(OpArgs):
    """``prefill``: input ``prompt`` as the engine's token IDs (input ``prefix``, if any, is a warm
    prefill this one waits for)."""


@dataclass(frozen=True)
class DecodeArgs(OpArgs):
    """``decode``: the text generated from input ``tokens`` under ``sampling``."""

    sampling: Sampling

    def __post_init__(self) -> None:
        _check(isinstance(self.sampling, Sampling), f"sampling must be a Sampling, got {type(self.sampling).__name__}")


@dataclass(frozen=True)
class ParseArgs(OpArgs):
    """``parse``: input ``text`` into a list of at most ``max_items`` items, one a line, by ``parse``
    (so the items of a text still being decoded can be read as their lines end)."""

    parse: Callable[[str], list]
    max_items: int

    def __post_init__(self) -> None:
        _check(callable(self.parse), "parse must be callable")
        _check(isinstance(self.max_items, int) and self.max_items > 0, f"max_items must be positive, got {self.max_items!r}")


@dataclass(frozen=True)
class RetrieveArgs(OpArgs):
    """``retrieve`` module: embed input ``query`` on ``embed``, search ``index``, map the hits to the
    framework's objects with ``to_nodes(hits, query)``. With ``aggregate`` it searches by the
    aggregate of the embeddings of input ``embedding_texts`` instead (HyDE)."""

    embed: EngineId
    index: EngineId
    top_k: int
    to_nodes: Callable[..., Any]
    aggregate: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        _check_engine("embed", self.embed, EngineKind.EMBEDDING)
        _check_engine("index", self.index, EngineKind.VECTOR_INDEX)
        SearchArgs(self.top_k)
        _check(not (self.batch and self.aggregate), "a retrieve aggregates one list of texts; it cannot also batch")


@dataclass(frozen=True)
class LLMCallArgs(OpArgs):
    """What every LLM-calling module has: the engine, the sampling, the prompt (and its prefix)."""

    llm: EngineId
    sampling: Sampling
    build_prompt: Callable[..., Any]
    prefix: PrefixSpec | None = None

    def __post_init__(self) -> None:
        _check_engine("llm", self.llm, EngineKind.LLM)
        DecodeArgs(self.sampling)


@dataclass(frozen=True)
class SynthesizeArgs(LLMCallArgs):
    """``synthesize`` module: (query, nodes) -> prompt -> LLM -> ``finish(query, nodes, answer)``."""

    finish: Callable[..., Any] = field(kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(callable(self.finish), "finish must be callable")


@dataclass(frozen=True)
class GenerateArgs(LLMCallArgs):
    """``generate`` module: inputs -> prompt -> LLM -> text, or with ``parse`` a list of at most
    ``max_items`` items."""

    parse: Callable[[str], list] | None = None
    max_items: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.parse is not None or self.max_items is not None:
            ParseArgs(self.parse, self.max_items)


@dataclass(frozen=True)
class Schema:
    """What a node of one op must be: its argument class, the engine kind that runs it (None: a
    module, not yet on an engine), the inputs it must read and those it may read (None: any)."""

    args: type[OpArgs]
    engine: EngineKind | None
    required: frozenset[str] = frozenset()
    optional: frozenset[str] | None = frozenset()


def _inputs(*required: str, optional: tuple[str, ...] | None = ()) -> dict[str, Any]:
    return {"required": frozenset(required), "optional": None if optional is None else frozenset(optional)}


# Two tables, as Op.CALL == ModuleKind.CALL (both are the string "call").
PRIMITIVE_SCHEMAS: Mapping[Op, Schema] = {
    Op.EMBED: Schema(EmbedArgs, EngineKind.EMBEDDING, **_inputs("text")),
    Op.SEARCH: Schema(SearchArgs, EngineKind.VECTOR_INDEX, **_inputs("vector")),
    Op.PROMPT: Schema(PromptArgs, EngineKind.CALLABLE, **_inputs(optional=None)),
    Op.PREFILL: Schema(PrefillArgs, EngineKind.LLM, **_inputs("prompt", optional=("prefix",))),
    Op.DECODE: Schema(DecodeArgs, EngineKind.LLM, **_inputs("tokens")),
    Op.PARSE: Schema(ParseArgs, EngineKind.CALLABLE, **_inputs("text")),
    Op.FUSE: Schema(FnArgs, EngineKind.CALLABLE, **_inputs(optional=None)),
    Op.CALL: Schema(FnArgs, EngineKind.CALLABLE, **_inputs(optional=None)),
}
MODULE_SCHEMAS: Mapping[ModuleKind, Schema] = {
    ModuleKind.RETRIEVE: Schema(RetrieveArgs, None, **_inputs("query", optional=("embedding_texts",))),
    ModuleKind.SYNTHESIZE: Schema(SynthesizeArgs, None, **_inputs("query", "nodes")),
    ModuleKind.GENERATE: Schema(GenerateArgs, None, **_inputs(optional=None)),
    ModuleKind.POSTPROCESS: Schema(FnArgs, None, **_inputs(optional=None)),
    ModuleKind.FUSE: Schema(FnArgs, None, **_inputs(optional=None)),
    ModuleKind.CALL: Schema(FnArgs, None, **_inputs(optional=None)),
}


def schema_of(op: Op | ModuleKind) -> Schema | None:
    """The schema of a primitive or module op (None for an op no schema defines)."""
    return PRIMITIVE_SCHEMAS.get(op) if isinstance(op, Op) else MODULE_SCHEMAS.get(op)


@dataclass(frozen=True)
class StopAfter:
    """Stop a streaming decode once ``parse`` finds ``items`` final items in its text."""

    parse: Callable[[str], list]
    items: int


@dataclass(frozen=True)
class Meta:
    """What passes decided about a node, apart from its op's arguments.

    ``stream``: a decode publishes its text as a stream while it runs; ``stop_after``: and stops
    early; ``warm``: a prefill sends a prompt prefix ahead into the engine's prefix cache;
    ``items``: a parse reads only items ``[start, stop)`` of its text.
    """

    stream: bool = False
    stop_after: StopAfter | None = None
    warm: bool = False
    items: tuple[int, int] | None = None


NO_META = Meta()
