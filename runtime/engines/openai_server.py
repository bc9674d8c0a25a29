"""LLM engine on an OpenAI-compatible server the user already runs (vLLM's, or another one).

The engine is a client: one shared HTTP connection pool, asynchronous and streaming. When it
starts it asks the server what it offers, and uses it:

- a vLLM server tokenizes (``/tokenize``, with the model's own chat template), so prompts go to
  ``/v1/completions`` as token IDs, exactly the tokens the server's chat endpoint would compute,
  and a prompt prefix can be sent ahead into its prefix cache (prefill splitting);
- ``priority`` is sent when the server schedules by it (``--scheduling-policy priority``);
- cached prompt tokens are read where the server reports them (``--enable-prompt-tokens-details``);
- a request whose reader stops early is closed, and the server aborts it.

Another OpenAI-compatible server gets the prompt as the user's client sends it (chat messages or
text): parallel calls and streamed decoding still pay there; prefill splitting does not, and the
engine says so in its capabilities. API keys and header values never appear in a repr, a log
line or an error.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import httpx

from teola.optimizer.ops import EngineKind
from teola.optimizer.values import Prompt, PromptPrefix, Sampling
from teola.runtime.engines.base import EngineCapabilities
from teola.runtime.engines.llm import LLMEngine
from teola.runtime.errors import EngineUnavailableError, TeolaRuntimeError
from teola.runtime.registry import EngineSpec

log = logging.getLogger(__name__)

# What the OpenAI client itself retries (before any output): timeouts, conflicts, rate limits, server errors.
_RETRIED_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_UNBOUNDED_CONTEXT = 1 << 30


class Secret:
    """A credential: usable as its value, never shown (repr and str say ``'***'``)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


@dataclass(frozen=True)
class ServerEndpoint:
    """Where the user's client sends its requests, as read off it: ``base_url`` (ending ``/v1``),
    the served ``model``, the credentials and headers it sends, its timeout and retries."""

    base_url: str
    model: str
    api_key: Secret | None = None
    headers: tuple[tuple[str, Secret], ...] = ()
    timeout: float = 60.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    @property
    def root(self) -> str:
        """The server's own URL (where vLLM serves ``/tokenize`` and ``/version``)."""
        return self.base_url.removesuffix("/v1")

    def http_headers(self) -> dict[str, str]:
        """The headers every request carries: the client's own, and its API key as a bearer token."""
        headers = {name: value.value for name, value in self.headers}
        if self.api_key is not None and self.api_key.value:
            headers.setdefault("Authorization", f"Bearer {self.api_key.value}")
        return headers

    def spec(self) -> EngineSpec:
        """The engine spec of this endpoint. Clients of one server and model share one engine; clients
        that send other credentials or headers get one of their own (named by a digest, never the key)."""
        key = f"{self.base_url}#{self.model}"
        if self.http_headers():
            key += "@" + hashlib.sha256(json.dumps(sorted(self.http_headers().items())).encode()).hexdigest()[:8]
        return EngineSpec(EngineKind.LLM, key, build=functools.partial(OpenAIServerEngine, self), in_process=True)


@dataclass(frozen=True)
class ServerFeatures:
    """What the server offers, as asked when the engine starts."""

    vllm_version: str | None = None
    tokenize: bool = False
    priority: bool = False
    cached_tokens: bool = False
    prefix_cache: bool = False
    max_model_len: int | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)


class ServerError(TeolaRuntimeError):
    """The LLM server answered a request with an error (its status and message)."""

    def __init__(self, status: int, message: str, url: str) -> None:
        super().__init__(f"the LLM server at {url} answered {status}: {message}")
        self.status = status


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    return str(error.get("message", error) if isinstance(error, dict) else error)[:500]


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in prompt.messages]


def _cut_at(prompt: Prompt, cut: str) -> Prompt | None:
    """``prompt`` up to the first ``cut``: the messages before it and the one holding it, cut there."""
    if prompt.text is not None:
        at = prompt.text.find(cut)
        return None if at < 0 else Prompt(text=prompt.text[:at])
    for i, message in enumerate(prompt.messages):
        at = message.content.find(cut)
        if at >= 0:
            return Prompt(messages=(*prompt.messages[:i], type(message)(message.role, message.content[:at])))
    return None


def _common_prefix(a: list[int], b: list[int]) -> list[int]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


class ServerLLMEngine(LLMEngine):
    """An LLM engine on servers that run on their own: not this process's to restart."""

    @property
    def dead(self) -> bool:
        """Never: requests to a server that is down fail, each with its error."""
        return False

    async def restart(self) -> None:
        """Nothing to restart."""


class OpenAIServerEngine(ServerLLMEngine):
    """An LLM engine on an OpenAI-compatible server (see the module's docstring).

    Made off the event loop (it asks the server what it offers, blocking): an unreachable server,
    or one that does not serve the model, is an ``EngineUnavailableError`` that says which.
    """

    tokenizer_threads = 8  # tokenizing is a request to the server: several may be on the way at once

    def __init__(self, endpoint: ServerEndpoint) -> None:
        self.endpoint = endpoint
        self.model_name = endpoint.model
        self._sync = httpx.Client(headers=endpoint.http_headers(), timeout=endpoint.timeout)
        self._async: httpx.AsyncClient | None = None
        try:
            self.features = self._probe()
        except BaseException:
            self._sync.close()
            raise
        self.max_model_len = self.features.max_model_len or _UNBOUNDED_CONTEXT
        self.capabilities = EngineCapabilities(max_batch=256, batches_itself=True, streaming=True,
                                               prefix_reuse=self.features.prefix_cache)
        self.settings = {"endpoint": endpoint.base_url, "model": endpoint.model}
        log.info("teola: LLM server %s (%s): %s", endpoint.base_url, endpoint.model, self.describe())

    def describe(self) -> str:
        """What the engine uses of its server, in a line."""
        f = self.features
        offered = [name for name, on in (("token-ID prompts", f.tokenize), ("priority", f.priority),
                                         ("prefix cache", f.prefix_cache), ("cached-token reports", f.cached_tokens))
                   if on]
        server = f"vLLM {f.vllm_version}" if f.vllm_version else "an OpenAI-compatible server"
        return f"{server}; uses {', '.join(offered) or 'plain chat/completions requests'}" + (
            f" ({'; '.join(f.notes)})" if f.notes else "")

    # -- what the server offers ------------------------------------------------------------------

    def _send(self, method: str, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """One blocking request (probing, tokenizing); a server that does not answer is an ``EngineUnavailableError``."""
        try:
            return self._sync.request(method, url, json=body)
        except httpx.HTTPError as exc:
            raise EngineUnavailableError(
                f"the LLM server at {self.endpoint.base_url} did not answer ({type(exc).__name__}: {exc}): "
                "start it, or point the client's base URL at a running server") from exc

    def _probe(self) -> ServerFeatures:
        base, model = self.endpoint.base_url, self.endpoint.model
        listed = self._send("GET", f"{base}/models")
        if listed.status_code >= 400:
            raise EngineUnavailableError(f"the LLM server at {base} refused to list its models "
                                         f"({listed.status_code}: {_error_message(listed)})")
        models = {m.get("id"): m for m in listed.json().get("data", [])}
        if model not in models:
            raise EngineUnavailableError(f"the LLM server at {base} serves {sorted(models)}, not {model!r}: "
                                         "give the client one of those model names")
        version = self._send("GET", f"{self.endpoint.root}/version")
        vllm_version = version.json().get("version") if version.status_code == 200 else None
        if vllm_version is None:
            return ServerFeatures(max_model_len=models[model].get("max_model_len"),
                                  notes=("no vLLM /version: prompts go as the client sends them",))
        probe = self._tokenize({"prompt": "Teola asks what this server offers. " * 8})
        priority, cached = self._probe_completion(probe, priority=1)
        _, cached_again = self._probe_completion(probe, priority=0)
        notes = [] if priority else ["no priority scheduling: start vLLM with --scheduling-policy priority"]
        if cached is None:
            notes.append("no cached-token reports: start vLLM with --enable-prompt-tokens-details")
        return ServerFeatures(vllm_version=vllm_version, tokenize=True, priority=priority, cached_tokens=cached is not None,
                              prefix_cache=cached is None or bool(cached_again), max_model_len=models[model].get("max_model_len"),
                              notes=tuple(notes))

    def _probe_completion(self, token_ids: list[int], priority: int) -> tuple[bool, int | None]:
        """Whether the server took ``priority``, and the cached tokens it reported (None: it reports none)."""
        body = {"model": self.endpoint.model, "prompt": token_ids, "max_tokens": 1, "temperature": 0.0}
        response = self._send("POST", f"{self.endpoint.base_url}/completions", {**body, "priority": priority})
        took_priority = response.status_code < 400
        if not took_priority:
            response = self._send("POST", f"{self.endpoint.base_url}/completions", body)
            if response.status_code >= 400:
                raise EngineUnavailableError(f"the LLM server at {self.endpoint.base_url} refused a one-token completion "
                                             f"({response.status_code}: {_error_message(response)})")
        details = (response.json().get("usage") or {}).get("prompt_tokens_details")
        return took_priority, None if details is None else int(details.get("cached_tokens") or 0)

    # -- tokenizing (on the scheduler's tokenizer threads) ---------------------------------------

    def _tokenize(self, body: dict[str, Any]) -> list[int]:
        url = f"{self.endpoint.root}/tokenize"
        response = self._send("POST", url, {"model": self.endpoint.model, **body})
        if response.status_code >= 400:
            raise ServerError(response.status_code, _error_message(response), url)
        return list(response.json()["tokens"])

    def _prompt_tokens(self, prompt: Prompt, generation_prompt: bool = True) -> list[int]:
        if prompt.messages:  # as the chat endpoint renders them: the chat template, no further special tokens
            return self._tokenize({"messages": _messages(prompt), "add_generation_prompt": generation_prompt})
        return self._tokenize({"prompt": prompt.text})  # as the completions endpoint: with special tokens

    def tokenize(self, prompt: Prompt) -> list[int] | Prompt:
        """The prompt's token IDs, by the server's tokenizer; the prompt itself for a server that does not tokenize."""
        return self._prompt_tokens(prompt) if self.features.tokenize else prompt

    def tokenize_prefix(self, prefix: PromptPrefix) -> list[int]:
        """The tokens the prompt and its cut share (less the last, which may merge with what follows)."""
        cut = _cut_at(prefix.prompt, prefix.cut)
        if not self.features.tokenize or cut is None:
            return []
        shared = _common_prefix(self._prompt_tokens(prefix.prompt), self._prompt_tokens(cut, generation_prompt=False))
        return shared[:-1]

    # -- generating (on the runtime's loop) ------------------------------------------------------

    def _request(self, prompt: list[int] | Prompt, sampling: Sampling, priority: int) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.endpoint.model, **dict(sampling.extra)}
        if sampling.max_tokens is not None:
            body["max_tokens"] = sampling.max_tokens
        if sampling.temperature is not None:
            body["temperature"] = sampling.temperature
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.json_schema:  # vLLM's structured outputs
            body["structured_outputs"] = {"json": json.loads(sampling.json_schema)}
        if self.features.priority:
            body["priority"] = priority
        body["stream"] = True
        if isinstance(prompt, Prompt) and prompt.messages:
            return f"{self.endpoint.base_url}/chat/completions", {**body, "messages": _messages(prompt)}
        return f"{self.endpoint.base_url}/completions", {**body, "prompt": prompt.text if isinstance(prompt, Prompt) else prompt}

    def _client(self) -> httpx.AsyncClient:
        if self._async is None:  # made on the loop that uses it
            self._async = httpx.AsyncClient(headers=self.endpoint.http_headers(), timeout=self.endpoint.timeout,
                                            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        return self._async

    async def generate(self, token_ids: list[int] | Prompt, sampling: Sampling, priority: int = 0,
                       request_id: str | None = None) -> AsyncIterator[tuple[str, int | None]]:
        """Stream ``(text delta, None)`` of one request; a reader that stops early closes the
        request (the server aborts it). Failures before the first delta are retried (see ``_retried``)."""
        url, body = self._request(token_ids, sampling, priority)
        started = False

        def may_retry() -> bool:
            return not started

        async for item in self._retried(url, body, request_id, may_retry):
            started = True
            yield item

    async def complete(self, token_ids: list[int] | Prompt, sampling: Sampling, priority: int = 0,
                       request_id: str | None = None) -> str:
        """The whole text of one request. Nobody has seen part of it until it is whole, so a failure
        is retried even after text came (see ``_retried``), as the OpenAI client retries its own."""
        url, body = self._request(token_ids, sampling, priority)
        parts: list[str] = []

        def start_over() -> bool:
            parts.clear()  # the retry's text replaces what the failed attempt gave
            return True

        async for delta, _ in self._retried(url, body, request_id, start_over):
            parts.append(delta)
        return "".join(parts)

    async def _retried(self, url: str, body: dict[str, Any], request_id: str | None,
                       may_retry: Callable[[], bool]) -> AsyncIterator[tuple[str, int | None]]:
        """The stream of one request. Timeouts, lost connections and the statuses the OpenAI client
        retries are retried (``max_retries`` times, with backoff) while ``may_retry()`` says so; then
        the request fails with the server's error (``ServerError``) or ``EngineUnavailableError``."""
        for attempt in range(self.endpoint.max_retries + 1):
            try:
                async for item in self._stream(url, body):
                    yield item
                return
            except (httpx.TimeoutException, httpx.TransportError, ServerError) as exc:
                retried = not isinstance(exc, ServerError) or exc.status in _RETRIED_STATUS
                if not retried or attempt == self.endpoint.max_retries or not may_retry():
                    if isinstance(exc, ServerError):
                        raise
                    raise EngineUnavailableError(f"the LLM server at {self.endpoint.base_url} failed request "
                                                 f"{request_id or ''} ({type(exc).__name__}: {exc})") from exc
                log.info("teola: request %s to %s failed (%s); retrying", request_id, self.endpoint.base_url, exc)
                await asyncio.sleep(0.5 * 2 ** attempt)

    async def _stream(self, url: str, body: dict[str, Any]) -> AsyncIterator[tuple[str, int | None]]:
        async with self._client().stream("POST", url, json=body) as response:
            if response.status_code >= 400:
                await response.aread()
                raise ServerError(response.status_code, _error_message(response), url)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    error = chunk["error"]
                    raise ServerError(int(error.get("code") or 500), str(error.get("message", error)), url)
                for choice in chunk.get("choices") or ():
                    delta = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
                    if delta:
                        yield delta, None
        # an OpenAI-compatible stream ends with [DONE]: one that stops before it was cut, not finished
        raise httpx.RemoteProtocolError(f"the answer from {url} ended before its [DONE]: the connection was cut")

    def close(self) -> None:
        """Close the connections (once; later calls do nothing)."""
        self._sync.close()
        client, self._async = self._async, None
        if client is not None:
            try:
                asyncio.get_running_loop().create_task(client.aclose())
            except RuntimeError:  # no loop runs here: the pool goes with the process
                pass


def request_sampling(params: dict[str, Any]) -> Sampling:
    """The ``Sampling`` of the request body a user's OpenAI client sends, less its prompt, model and
    ``stream``: ``max_tokens`` (or ``max_completion_tokens``), ``temperature`` and ``stop`` as such
    (None where the client sends none: the server's defaults hold), everything else as ``extra``
    (``extra_body``, which the OpenAI client merges into the body, merged)."""
    params = {k: v for k, v in params.items() if k not in ("model", "stream", "messages", "prompt") and v is not None}
    params.update(params.pop("extra_body", None) or {})
    max_tokens = params.pop("max_tokens", None)
    max_tokens = params.pop("max_completion_tokens", max_tokens)
    stop = params.pop("stop", None) or ()
    schema = None
    if set(params.get("structured_outputs") or ()) == {"json"}:  # vLLM's guided JSON: Sampling's own field
        schema = params.pop("structured_outputs")["json"]
        schema = schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True)
    return Sampling(max_tokens=max_tokens, temperature=params.pop("temperature", None),
                    stop=(stop,) if isinstance(stop, str) else tuple(stop), json_schema=schema,
                    extra=tuple(sorted(params.items())))
