"""Several OpenAI-compatible servers of one model as one LLM engine, sharing the load.

A user who runs the same model on several servers says so once (``add_server_replicas``): the
requests their clients send to one base URL are then spread over it and its replicas. Requests
are routed as the Ray backend routes over its replicas (``TokenRouter``): to the server with the
fewest queued tokens, counting the prompt prefix each server was sent lately, so a prefix sent
ahead (prefill splitting) and its full prompt meet on one server while loads are close.

A server that does not answer (down, unreachable, out of retries) is passed over for
``cool_off_s`` seconds, and a request it failed before any text came is sent to another one; a
request whose text was already read, or one a server refused (4xx), fails as on one server.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import replace
from typing import AsyncIterator, Callable, Sequence, TypeVar

from teola.optimizer.values import ChatMessage, Prompt, PromptPrefix, Sampling
from teola.runtime.backends.routing import TokenRouter
from teola.runtime.engines.base import EngineCapabilities
from teola.runtime.engines.openai_server import OpenAIServerEngine, ServerEndpoint, ServerLLMEngine
from teola.runtime.errors import EngineUnavailableError
from teola.runtime.registry import EngineSpec

log = logging.getLogger(__name__)

T = TypeVar("T")

_replicas: dict[str, tuple[str, ...]] = {}
_replicas_lock = threading.Lock()

# What the pool asks every vLLM server to tokenize when it starts: equal tokens, one model and chat template.
_SAME_MODEL_PROBE = Prompt(messages=(ChatMessage("system", "Teola checks that the servers serve one model."),
                                    ChatMessage("user", "Do they tokenize alike?")))


def _normal(url: str) -> str:
    return url.rstrip("/")


def add_server_replicas(base_url: str, replicas: Sequence[str]) -> None:
    """Spread what clients send to ``base_url`` (an OpenAI-compatible server's URL ending ``/v1``) over it
    and ``replicas``: more servers of the same model (same model name, credentials and headers as the
    client sends). Call it before ``optimize()`` or before enabling the LangChain executor: apps
    optimized earlier keep the engine they started with. An empty ``replicas`` undoes it."""
    base, others = _normal(base_url), tuple(dict.fromkeys(_normal(url) for url in replicas))
    if base in others:
        raise ValueError(f"{base_url} is listed as its own replica: list only the other servers")
    with _replicas_lock:
        if others:
            _replicas[base] = others
        else:
            _replicas.pop(base, None)


def server_replicas(base_url: str) -> tuple[str, ...]:
    """The other servers ``base_url``'s requests are spread over (``add_server_replicas``); empty: none."""
    with _replicas_lock:
        return _replicas.get(_normal(base_url), ())


def endpoint_spec(endpoint: ServerEndpoint) -> EngineSpec:
    """The engine of a client's endpoint: one server's engine, or a pool over it and its replicas."""
    others = server_replicas(endpoint.base_url)
    spec = endpoint.spec()
    if not others:
        return spec
    endpoints = (endpoint, *(replace(endpoint, base_url=url) for url in others))
    return replace(spec, model=spec.model + "".join(f"+{url}" for url in others),
                   build=functools.partial(ServerPoolEngine, endpoints))


class ServerPoolEngine(ServerLLMEngine):
    """An LLM engine over several servers of one model (see the module's docstring).

    ``members`` are the servers' engines (those that answered when it started), ``router`` the routing
    state, ``requests_per_server`` how many requests each was sent. Prompts are tokenized by one server
    (every vLLM member is checked to tokenize alike); token-ID prompts and prefill splitting are used
    only when every member offers them.
    """

    tokenizer_threads = OpenAIServerEngine.tokenizer_threads

    def __init__(self, endpoints: Sequence[ServerEndpoint], cool_off_s: float = 10.0) -> None:
        self.members: list[OpenAIServerEngine] = []
        failures: list[str] = []
        for endpoint in endpoints:
            try:
                self.members.append(OpenAIServerEngine(endpoint))
            except EngineUnavailableError as exc:
                failures.append(str(exc))
        if not self.members:
            raise EngineUnavailableError("none of the servers answered: " + "; ".join(failures))
        for failure in failures:
            log.warning("teola: %s; the other servers share the load without it", failure)
        self.model_name = endpoints[0].model
        self._tokenize_ids = all(member.features.tokenize for member in self.members)
        if self._tokenize_ids:
            try:
                self._check_same_tokens()
            except BaseException:
                self.close()
                raise
        self.max_model_len = min(member.max_model_len for member in self.members)
        self.capabilities = EngineCapabilities(
            max_batch=256, batches_itself=True, streaming=True,
            prefix_reuse=self._tokenize_ids and all(member.capabilities.prefix_reuse for member in self.members))
        self.settings = {"endpoints": [member.endpoint.base_url for member in self.members], "model": self.model_name}
        self.router = TokenRouter(len(self.members))
        self.requests_per_server = [0] * len(self.members)
        self.cool_off_s = cool_off_s
        self._down_until = [0.0] * len(self.members)
        log.info("teola: %d servers of %s share the load (%s)", len(self.members), self.model_name,
                 ", ".join(member.endpoint.base_url for member in self.members))

    def _check_same_tokens(self) -> None:
        first, *others = self.members
        expected = first.tokenize(_SAME_MODEL_PROBE)
        for member in others:
            if member.tokenize(_SAME_MODEL_PROBE) != expected:
                raise EngineUnavailableError(
                    f"the servers at {first.endpoint.base_url} and {member.endpoint.base_url} tokenize a chat "
                    f"differently: they do not serve one model {self.model_name!r}; list only replicas of one model")

    # -- which member ----------------------------------------------------------------------------

    def _down(self) -> set[int]:
        now = time.monotonic()
        return {i for i, until in enumerate(self._down_until) if until > now}

    def _route(self, prompt: list[int] | Prompt, sampling: Sampling, tried: set[int]) -> tuple[int, float]:
        token_ids = prompt if isinstance(prompt, list) else []
        most = sampling.max_tokens if sampling.max_tokens is not None else self.max_model_len - len(token_ids)
        avoid = tried | self._down()
        if len(avoid) == len(self.members):  # every untried one is down: try one anyway, it may be back
            avoid = tried
        replica, load = self.router.route(token_ids, most, avoid)
        self.requests_per_server[replica] += 1
        return replica, load

    def _fail_over(self, replica: int, tried: set[int], error: EngineUnavailableError) -> bool:
        """Pass ``replica`` over for a while; whether another member is left to try."""
        self._down_until[replica] = time.monotonic() + self.cool_off_s
        self.router.prefixes.forget(replica)
        tried.add(replica)
        left = len(tried) < len(self.members)
        if left:
            log.warning("teola: %s; its requests go to the other servers for %.0f s", error, self.cool_off_s)
        return left

    def _on_any(self, work: Callable[[OpenAIServerEngine], T]) -> T:
        """``work`` on the first member that answers, those down last (blocking: tokenizing)."""
        down = self._down()
        order = iter(sorted(range(len(self.members)), key=lambda i: i in down))
        tried: set[int] = set()
        while True:  # the last member's failure is raised by _fail_over's False
            replica = next(order)
            try:
                return work(self.members[replica])
            except EngineUnavailableError as exc:
                if not self._fail_over(replica, tried, exc):
                    raise

    # -- tokenizing (on the scheduler's tokenizer threads) ---------------------------------------

    def tokenize(self, prompt: Prompt) -> list[int] | Prompt:
        """The prompt's token IDs by a member's tokenizer; the prompt itself when a member does not tokenize."""
        return self._on_any(lambda member: member.tokenize(prompt)) if self._tokenize_ids else prompt

    def tokenize_prefix(self, prefix: PromptPrefix) -> list[int]:
        """The tokens the prompt and its cut share (empty when a member does not tokenize)."""
        return self._on_any(lambda member: member.tokenize_prefix(prefix)) if self._tokenize_ids else []

    # -- generating (on the runtime's loop) ------------------------------------------------------

    async def generate(self, token_ids: list[int] | Prompt, sampling: Sampling, priority: int = 0,
                       request_id: str | None = None) -> AsyncIterator[tuple[str, int | None]]:
        """Stream one request's text deltas from the server the router picks; one that fails before any
        text came is passed over and the request goes to another."""
        tried: set[int] = set()
        while True:
            replica, load = self._route(token_ids, sampling, tried)
            started = False
            try:
                async for item in self.members[replica].generate(token_ids, sampling, priority, request_id):
                    started = True
                    yield item
                return
            except EngineUnavailableError as exc:
                if started or not self._fail_over(replica, tried, exc):
                    raise
            finally:
                self.router.done(replica, load)

    async def complete(self, token_ids: list[int] | Prompt, sampling: Sampling, priority: int = 0,
                       request_id: str | None = None) -> str:
        """The whole text of one request from the server the router picks (another if it fails: nobody
        has seen part of a whole text)."""
        tried: set[int] = set()
        while True:
            replica, load = self._route(token_ids, sampling, tried)
            try:
                return await self.members[replica].complete(token_ids, sampling, priority, request_id)
            except EngineUnavailableError as exc:
                if not self._fail_over(replica, tried, exc):
                    raise
            finally:
                self.router.done(replica, load)

    def describe(self) -> str:
        """What the engine uses of its servers, in a line."""
        return "; ".join(f"{member.endpoint.base_url}: {member.describe()}" for member in self.members)

    def close(self) -> None:
        """Close every member's connections (once; later calls do nothing)."""
        for member in self.members:
            member.close()

