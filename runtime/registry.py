"""The engine registry: what each kind of engine is, how it starts, and which scheduler drives it.

An ``EngineSpec`` says which engine is wanted (kind, model or what it serves, settings); its ``id``
is the engine's stable identity. ``ENGINE_KINDS`` holds one ``EngineKindEntry`` per kind: how to
make the engine (a picklable factory, so a backend may make it in another process), how to wrap
it in its scheduler, and the rules that turn the primitives it serves into its requests. A backend
starts any spec through it (``Backend.start``), the runtime serves any spec through it
(``Runtime.engine``) and the graph scheduler sends primitives by its rules: a new kind of engine is
its engine class, its request type and one ``register`` call, nothing in the runtime or the backends.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from teola.optimizer.ir import Node, Op
from teola.optimizer.ops import EngineId, EngineKind
from teola.runtime.engine_scheduler import BatchingScheduler, EngineScheduler, LLMScheduler
from teola.runtime.requests import (BatchRequest, EmbedRequest, EngineRequest, GenerateRequest, OpRule, SearchRequest,
                                    TokenizeRequest, WarmPrefixRequest, items_of)


@dataclass(frozen=True)
class EngineSpec:
    """One engine: its ``kind``, its ``model`` (a model name, folder or hub id; for an engine built
    from data, the stable key of that data), its ``settings`` (what it starts with), and for an
    engine built from data, ``build``, which makes it (picklable, so it can be made elsewhere).

    ``in_process``: ``build`` makes the engine in this process, whatever the backend: a client of a
    server that already runs (an OpenAI-compatible LLM server), or an engine around the user's own
    model object.
    """

    kind: EngineKind
    model: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    build: Callable[[], Any] | None = field(default=None, compare=False)
    in_process: bool = False

    @property
    def id(self) -> EngineId:
        """The engine's identity: one engine per id serves every app that asks for it."""
        return EngineId.of(self.kind, self.model)


@dataclass(frozen=True)
class EngineKindEntry:
    """How one kind of engine is made and driven.

    ``scheduler(id, engine)``: the engine scheduler in front of it. ``rules``: for each op its
    engines serve, how a primitive becomes a request. ``factory(spec)``: a zero-argument, picklable
    callable that makes the engine where it is called (None: the kind starts only through
    ``start``). ``start(spec)``: how this process starts one (default: the factory, on a worker
    thread).
    """

    scheduler: Callable[[EngineId, Any], EngineScheduler]
    rules: Mapping[Op, OpRule]
    factory: Callable[[EngineSpec], Callable[[], Any]] | None = None
    start: Callable[[EngineSpec], Awaitable[Any]] | None = None

    async def start_here(self, spec: EngineSpec) -> Any:
        """The engine, started in this process (blocking model loading runs on a worker thread)."""
        if spec.in_process:
            return await asyncio.to_thread(_built(spec))
        if self.start is not None:
            return await self.start(spec)
        return await asyncio.to_thread(self.factory(spec))


ENGINE_KINDS: dict[EngineKind, EngineKindEntry] = {}


def register(kind: EngineKind, entry: EngineKindEntry) -> None:
    """Make ``kind`` an engine kind the runtime and every backend can start."""
    ENGINE_KINDS[kind] = entry


def batching(accepts: type[BatchRequest]) -> Callable[[EngineId, Any], EngineScheduler]:
    """A scheduler factory for batch engines taking ``accepts`` requests."""
    return lambda id, engine: BatchingScheduler(id, engine, accepts)


async def _start_vllm(spec: EngineSpec) -> Any:
    from teola.runtime.engines.llm import VLLMEngine

    return await VLLMEngine.started(spec.model, **spec.settings)


def _sentence_transformer(spec: EngineSpec) -> Callable[[], Any]:
    from teola.runtime.engines.embedding import SentenceTransformerEngine

    return functools.partial(SentenceTransformerEngine, spec.model, **spec.settings)


def _built(spec: EngineSpec) -> Callable[[], Any]:
    if spec.build is None:
        raise ValueError(f"the {spec.kind.value} engine {spec.model!r} is built from data: give its spec a build")
    return spec.build


def _embed(node: Node, args: Mapping[str, Any], **envelope: Any) -> EngineRequest:
    return EmbedRequest(items_of(node, args["text"]), **envelope)


def _search(node: Node, args: Mapping[str, Any], **envelope: Any) -> EngineRequest:
    return SearchRequest(items_of(node, args["vector"]), node.args.top_k, **envelope)


def _prefill(node: Node, args: Mapping[str, Any], **envelope: Any) -> EngineRequest:
    if node.meta.warm:
        return WarmPrefixRequest(args["prompt"], **envelope)
    return TokenizeRequest(items_of(node, args["prompt"]), **envelope)


def _decode(node: Node, args: Mapping[str, Any], **envelope: Any) -> EngineRequest:
    return GenerateRequest(items_of(node, args["tokens"]), node.args.sampling, **envelope)


register(EngineKind.LLM, EngineKindEntry(LLMScheduler, {Op.PREFILL: OpRule(_prefill, lambda node: not node.meta.warm),
                                                        Op.DECODE: OpRule(_decode)}, start=_start_vllm))
register(EngineKind.EMBEDDING, EngineKindEntry(batching(EmbedRequest), {Op.EMBED: OpRule(_embed)}, _sentence_transformer))
register(EngineKind.VECTOR_INDEX, EngineKindEntry(batching(SearchRequest), {Op.SEARCH: OpRule(_search)}, _built))
