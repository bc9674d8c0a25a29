"""Engines as Ray actors, placed on a Ray cluster and driven like in-process engines.

Each engine runs as one or more replicas, each a Ray actor holding the in-process engine (vLLM,
sentence-transformers, faiss) on the node its ``Placement`` picks. The runtime's schedulers talk
to a proxy that has the in-process engine's interface: LLM prompts are tokenized here and go to
the replica with the fewest queued tokens once its cached prefix is counted (so a warmed prefix
and its full prompt meet on one replica while loads are close); batches go to the replica with
the fewest requests in flight. A replica that dies is replaced by a new actor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence

from teola.optimizer.ops import EngineKind
from teola.optimizer.values import Sampling
from teola.runtime.backends.base import Backend
from teola.runtime.backends.routing import ReplicaLoads, TokenRouter
from teola.runtime.engines.base import BatchEngine, EngineCapabilities
from teola.runtime.engines.llm import ChatTokenizer, LLMEngine, engine_settings
from teola.runtime.errors import EngineDiedError, EngineUnavailableError, TeolaRuntimeError
from teola.runtime.registry import ENGINE_KINDS, EngineSpec

log = logging.getLogger(__name__)

# What a replica's process takes from ours: offline models, caches, vLLM's and tokenizers' options.
_FORWARDED_ENV = ("HF_", "TEOLA_", "VLLM_", "TOKENIZERS_", "TRANSFORMERS_")


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise EngineUnavailableError("the Ray backend needs Ray: pip install 'teola[ray]'") from exc
    return ray


@dataclass(frozen=True)
class Placement:
    """Where one engine's replicas run on the Ray cluster and what each reserves there.

    ``num_cpus``, ``num_gpus`` and ``resources`` are Ray resource requests per replica (a custom
    resource pins replicas to the nodes that offer it). ``env_vars`` are set in each replica's
    process, ``{replica}`` in a value becoming the replica's index (``VLLM_CPU_OMP_THREADS_BIND``:
    ``"{replica}"`` gives each CPU replica a core of its own).
    """

    replicas: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    env_vars: Mapping[str, str] = field(default_factory=dict)
    start_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"a Placement needs at least one replica, got {self.replicas}")

    def demand(self) -> dict[str, float]:
        """The resources one replica asks of a node."""
        asked = {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources}
        return {name: amount for name, amount in asked.items() if amount}

    def env_for(self, replica: int) -> dict[str, str]:
        """The environment replica ``replica``'s process starts its engine with."""
        env = {name: value for name, value in os.environ.items() if name.startswith(_FORWARDED_ENV)}
        env.update({name: value.format(replica=replica) for name, value in self.env_vars.items()})
        return env


class LLMReplica:
    """A Ray actor holding one vLLM engine; streams ``(delta, cached tokens)`` per request."""

    def __init__(self, env: Mapping[str, str]) -> None:
        os.environ.update(env)
        self._engine = None

    async def start(self, model: str, settings: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Start the engine (checked against its model's known answers); return the node it runs on and
        the settings it started with (its dtype resolved there, where it computes)."""
        from teola.runtime.engines.llm import VLLMEngine

        self._engine = await VLLMEngine.started(model, **settings)
        return _ray().get_runtime_context().get_node_id(), dict(self._engine.settings)

    async def generate(self, token_ids: list[int], sampling: Sampling, priority: int,
                       request_id: str | None) -> AsyncIterator[tuple[str, int | None]]:
        """The engine's stream for one request (cancelled with the caller's stream: vLLM aborts it)."""
        async for item in self._engine.generate(token_ids, sampling, priority, request_id):
            yield item

    async def complete(self, token_ids: list[int], sampling: Sampling, priority: int, request_id: str | None) -> str:
        """The whole text of one request, sent back once (not a Ray object per delta)."""
        return await self._engine.complete(token_ids, sampling, priority, request_id)

    def unfinished_requests(self) -> int:
        """How many requests this replica's engine holds unfinished."""
        return self._engine.unfinished_requests()

    def close(self) -> None:
        """Stop the engine core."""
        if self._engine is not None:
            self._engine.close()


class BatchReplica:
    """A Ray actor holding one batch engine (embedding, vector index), made in its process by ``make``."""

    def __init__(self, env: Mapping[str, str], make: Callable[[], BatchEngine]) -> None:
        os.environ.update(env)
        self._engine = make()

    async def ready(self) -> tuple[str, tuple[EngineCapabilities, Any]]:
        """The node this replica runs on, and its engine's capabilities and a sample request."""
        return _ray().get_runtime_context().get_node_id(), (self._engine.capabilities, self._engine.sample_request())

    async def run_batch(self, requests: Sequence[Any]) -> list[Any]:
        """One batch on the engine."""
        return await self._engine.run_batch(requests)

    def close(self) -> None:
        """Release the engine."""
        self._engine.close()


def _remote_error(exc: BaseException) -> BaseException:
    """The engine's own exception inside a Ray task error (so callers see the error they would in process)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


async def _started(ready: Awaitable[Any], placement: Placement, what: str) -> Any:
    """Await a new replica's readiness, with an error that says what to do if it never comes."""
    ray = _ray()
    try:
        return await asyncio.wait_for(ready, placement.start_timeout_s)
    except asyncio.TimeoutError:
        raise TeolaRuntimeError(
            f"{what} did not start within {placement.start_timeout_s:.0f} s: the Ray cluster may have no node with "
            f"{placement.demand()} free; add one, or ask for less in its Placement") from None
    except ray.exceptions.RayTaskError as exc:
        raise _remote_error(exc) from exc


class ReplicaActors:
    """One engine's replicas on the cluster: the actor of each (``actors``) and the node it runs on (``nodes``).

    Each actor is ``cls(env, *args)`` placed by ``placement``; ``ready(actor)`` is the call whose reply
    says it serves: ``(node ID, details)``, the details being handed back to the caller.
    """

    def __init__(self, backend: "RayBackend", placement: Placement, what: str, cls: type,
                 ready: Callable[[Any], Awaitable[Any]], *args: Any) -> None:
        self._backend = backend
        self._placement = placement
        self._what = what
        self._cls = cls
        self._ready = ready
        self._args = args
        self.actors: list[Any] = [None] * placement.replicas
        self.nodes: list[str] = [""] * placement.replicas

    async def start(self, replica: int) -> Any:
        """Start a new actor for ``replica``; return what its readiness reply carries besides the node."""
        actor = self._backend.actor(self._cls, self._placement, replica).remote(
            self._placement.env_for(replica), *self._args)
        self.actors[replica] = actor
        self.nodes[replica], details = await _started(self._ready(actor), self._placement,
                                                      f"replica {replica} of {self._what}")
        return details

    async def start_all(self) -> list[Any]:
        """Start every replica at once; return what each readiness reply carries besides the node."""
        return list(await asyncio.gather(*(self.start(r) for r in range(len(self.actors)))))

    async def replace(self, replica: int) -> Any:
        """End ``replica``'s actor and start a new one in its place."""
        _ray().kill(self.actors[replica])
        return await self.start(replica)

    def close(self) -> None:
        """Let each actor stop its engine (vLLM's core process with it), then end the actors (once)."""
        ray = _ray()
        alive = [actor for actor in self.actors if actor is not None]
        ray.wait([actor.close.remote() for actor in alive], num_returns=len(alive), timeout=30)
        for actor in alive:
            ray.kill(actor)
        self.actors = []


class _OnReplicas:
    """What a proxy shows of its replicas: their actors (``replicas``) and the node of each (``nodes``)."""

    _actors: ReplicaActors

    @property
    def replicas(self) -> list[Any]:
        """The replicas' actors."""
        return self._actors.actors

    @property
    def nodes(self) -> list[str]:
        """The node each replica runs on."""
        return self._actors.nodes


class RayLLMEngine(_OnReplicas, ChatTokenizer, LLMEngine):
    """An LLM engine whose replicas are Ray actors (``LLMReplica``); prompts are tokenized here.

    ``replicas`` holds the actors, ``nodes`` their node IDs, ``router`` the routing state and
    ``requests_per_replica`` how many requests each was sent. Whole texts come back in one reply,
    streams as a Ray object per delta. A replica whose actor or engine core died is avoided until
    ``restart`` replaces it with a new actor.
    """

    def __init__(self, backend: "RayBackend", model: str, settings: dict[str, Any], placement: Placement) -> None:
        super().__init__(model, settings["max_model_len"])
        self.settings = settings
        self._actors = ReplicaActors(backend, placement, f"the LLM engine {model}", LLMReplica,
                                     lambda actor: actor.start.remote(model, settings))
        self.router = TokenRouter(placement.replicas)
        self.requests_per_replica = [0] * placement.replicas
        self._dead: set[int] = set()

    async def start_replicas(self) -> "RayLLMEngine":
        """Start every replica (at once); return the engine once all serve, with the settings they
        started with (the first replica's: every replica starts with the same ones)."""
        self.settings = (await self._actors.start_all())[0]
        return self

    @property
    def dead(self) -> bool:
        """Whether some replica died and was not replaced yet."""
        return bool(self._dead)

    async def restart(self) -> None:
        """Replace every dead replica by a new actor (the others serve on meanwhile)."""
        for replica in sorted(self._dead):
            log.warning("teola: replica %d of the LLM engine %s died; starting a new one", replica, self.model_name)
            self.router.prefixes.forget(replica)
            await self._actors.replace(replica)
            self._dead.discard(replica)
        self.restarts += 1

    async def generate(self, token_ids: list[int], sampling: Sampling, priority: int = 0,
                       request_id: str | None = None) -> AsyncIterator[tuple[str, int | None]]:
        """Stream one request's text deltas from the replica the router picks."""
        ray = _ray()
        with self._routed(token_ids, sampling) as replica:
            stream = self.replicas[replica].generate.options(num_returns="streaming").remote(token_ids, sampling, priority,
                                                                                              request_id)
            finished = False
            try:
                async for ref in stream:
                    yield await ref
                finished = True
            finally:
                if not finished:
                    ray.cancel(stream)  # the replica's engine aborts the request

    async def complete(self, token_ids: list[int], sampling: Sampling, priority: int = 0,
                       request_id: str | None = None) -> str:
        """The whole text of one request from the replica the router picks, in one reply."""
        with self._routed(token_ids, sampling) as replica:
            reply = self.replicas[replica].complete.remote(token_ids, sampling, priority, request_id)
            try:
                return await reply
            except asyncio.CancelledError:
                _ray().cancel(reply)
                raise

    @contextmanager
    def _routed(self, token_ids: list[int], sampling: Sampling) -> Iterator[int]:
        """Route one request; turn a dead replica into ``EngineDiedError`` and a replica's error into
        the engine's own exception; give the replica's load back when the request ends."""
        ray = _ray()
        self.check_fits(token_ids)
        most = self.max_model_len - len(token_ids) if sampling.max_tokens is None else sampling.max_tokens
        replica, load = self.router.route(token_ids, most, self._dead)
        self.requests_per_replica[replica] += 1
        try:
            yield replica
        except ray.exceptions.RayActorError as exc:
            self._dead.add(replica)
            raise EngineDiedError(f"replica {replica} of {self.model_name} (node {self.nodes[replica]}) "
                                  "died during a request") from exc
        except ray.exceptions.RayTaskError as exc:
            error = _remote_error(exc)
            if isinstance(error, EngineDiedError):
                self._dead.add(replica)
            raise error from exc
        finally:
            self.router.done(replica, load)

    def close(self) -> None:
        """Stop every replica's engine and actor (once)."""
        self._actors.close()


class RayBatchEngine(_OnReplicas, BatchEngine):
    """A batch engine whose replicas are Ray actors (``BatchReplica``). Each batch goes to the replica
    with the fewest requests in flight; a batch whose replica died is run again once on a new
    replica (embedding and search change nothing, so repeating them is safe). ``replicas`` holds the
    actors, ``nodes`` their node IDs."""

    def __init__(self, backend: "RayBackend", what: str, make: Callable[[], BatchEngine], placement: Placement) -> None:
        super().__init__()
        self._what = what
        self._actors = ReplicaActors(backend, placement, f"the {what} engine", BatchReplica,
                                     lambda actor: actor.ready.remote(), make)
        self._loads = ReplicaLoads(placement.replicas)
        self._replacing = asyncio.Lock()
        self._sample: Any = None
        self.restarts = 0

    async def start_replicas(self) -> "RayBatchEngine":
        """Start every replica (at once); return the engine once all serve."""
        self._serving(*(await self._actors.start_all())[0])
        return self

    def _serving(self, capabilities: EngineCapabilities, sample: Any) -> None:
        self.capabilities = replace(capabilities, concurrent_batches=len(self.replicas))
        self._sample = sample

    def sample_request(self) -> Any:
        """The replicas' engine's sample request."""
        return self._sample

    async def _on_replica(self, replica: int, requests: list[Any]) -> list[Any]:
        ray = _ray()
        self._loads.add(replica, len(requests))
        try:
            return await self.replicas[replica].run_batch.remote(requests)
        except ray.exceptions.RayTaskError as exc:
            raise _remote_error(exc) from exc
        finally:
            self._loads.done(replica, len(requests))

    async def _replace(self, replica: int, dead: Any) -> None:
        async with self._replacing:
            if self.replicas[replica] is dead:  # not replaced yet by another batch that saw it die
                log.warning("teola: replica %d of the %s engine died; starting a new one", replica, self._what)
                self._serving(*await self._actors.replace(replica))
                self.restarts += 1

    async def run_batch(self, requests: Sequence[Any]) -> list[Any]:
        """Run a batch on the least-loaded replica (again on a new one if that replica dies)."""
        ray = _ray()
        replica = self._loads.pick()
        actor = self.replicas[replica]
        try:
            return await self._on_replica(replica, list(requests))
        except ray.exceptions.RayActorError:
            await self._replace(replica, actor)
        try:
            return await self._on_replica(replica, list(requests))
        except ray.exceptions.RayActorError as exc:
            raise EngineDiedError(f"replica {replica} of the {self._what} engine died twice under one batch") from exc

    def close(self) -> None:
        """Stop every replica (once)."""
        self._actors.close()
        super().close()


def _given(engine: BatchEngine) -> BatchEngine:
    return engine


class RayBackend(Backend):
    """Engines as Ray actors on a Ray cluster.

    On first use it joins the cluster at ``address`` (``"auto"``, ``"ray://host:10001"``, a head's address);
    None joins the one ``RAY_ADDRESS`` names or starts a local one with ``init_args`` (``ray.init``'s
    keywords, e.g. ``num_cpus``). A process already connected to Ray keeps its connection.
    ``llm``, ``embedding`` and ``vector_index`` place those kinds of engine (replicas, resources);
    ``placements`` adds or overrides the placement of any kind (a kind with none gets ``Placement()``).
    The driver tokenizes prompts, so it needs the LLM's tokenizer files as the nodes do.
    """

    def __init__(self, address: str | None = None, llm: Placement = Placement(),
                 embedding: Placement = Placement(num_cpus=0.5), vector_index: Placement = Placement(num_cpus=0.25),
                 placements: Mapping[EngineKind, Placement] | None = None, **init_args: Any) -> None:
        self.address = address
        self.placements: dict[EngineKind, Placement] = {EngineKind.LLM: llm, EngineKind.EMBEDDING: embedding,
                                                        EngineKind.VECTOR_INDEX: vector_index, **(placements or {})}
        self._init_args = init_args
        self._actor_classes: dict[type, Any] = {}
        self._connected_here = False

    def open(self) -> None:
        """Join (or start) the Ray cluster, unless this process is connected to Ray already."""
        ray = _ray()
        if not ray.is_initialized():
            if self.address is None and "RAY_ADDRESS" not in os.environ:
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster: no token file in ~/.ray
            ray.init(address=self.address, **self._init_args)
            self._connected_here = True

    def actor(self, cls: type, placement: Placement, replica: int) -> Any:
        """The Ray actor class for ``cls``, with ``placement``'s options, checked to fit some node."""
        ray = _ray()
        demand = placement.demand()
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        if not any(all(offer.get(name, 0) >= amount for name, amount in demand.items()) for offer in nodes):
            raise TeolaRuntimeError(
                f"no node of the Ray cluster can hold replica {replica} of {cls.__name__} ({demand}); the nodes offer "
                f"{nodes}: add a node with those resources, or ask for less in the engine's Placement")
        if cls not in self._actor_classes:
            self._actor_classes[cls] = ray.remote(cls)
        return self._actor_classes[cls].options(num_cpus=placement.num_cpus, num_gpus=placement.num_gpus,
                                                resources=dict(placement.resources), max_restarts=0)

    async def start(self, spec: EngineSpec) -> Any:
        """The engine ``spec`` asks for, its replicas placed by its kind's placement. An LLM runs vLLM
        on each replica; a batch engine is made on each replica by its kind's factory, or, when it
        is built from data here (a vector index), built once here and shipped to the replicas. An
        ``in_process`` one (a server's client, the user's own model) is made in this process."""
        placement = self.placements.get(spec.kind, Placement())
        if spec.in_process:
            return await ENGINE_KINDS[spec.kind].start_here(spec)
        if spec.kind is EngineKind.LLM:
            return await RayLLMEngine(self, spec.model, engine_settings(**spec.settings), placement).start_replicas()
        entry = ENGINE_KINDS[spec.kind]
        make = functools.partial(_given, await entry.start_here(spec)) if spec.build is not None else entry.factory(spec)
        return await RayBatchEngine(self, str(spec.id), make, placement).start_replicas()

    def close(self) -> None:
        """Leave the Ray cluster if this backend joined it (once)."""
        if self._connected_here:
            _ray().shutdown()
            self._connected_here = False
