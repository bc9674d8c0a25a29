"""The LLM engine on a real vLLM OpenAI-compatible server on loopback."""

import asyncio
import json
import logging

import httpx
import pytest

from teola.optimizer.values import CONTEXT_MARK, ChatMessage, Prompt, PromptPrefix, Sampling
from teola.runtime.clients import LLMClient
from teola.runtime.engines.openai_server import (OpenAIServerEngine, Secret, ServerEndpoint, ServerError,
                                                 request_sampling)
from teola.runtime.errors import EngineUnavailableError
from teola_integrations.tools.faulty_proxy import FaultyProxy
from teola_integrations.tools.vllm_server import SERVED_NAME

QUESTION = Prompt(messages=(ChatMessage("system", "Answer in one sentence."),
                            ChatMessage("user", "What does the pass statement do in Python?")))


@pytest.fixture(scope="module")
def endpoint(vllm_server):
    return ServerEndpoint(vllm_server.base_url, SERVED_NAME, Secret("not-a-real-key"))


@pytest.fixture(scope="module")
def server_llm(runtime, endpoint):
    return runtime.engine(endpoint.spec())


def test_the_engine_finds_what_the_vllm_server_offers(server_llm):
    features = server_llm.engine.features
    assert features.vllm_version and features.tokenize and features.priority and features.cached_tokens
    assert features.prefix_cache and features.max_model_len == 2048
    assert server_llm.capabilities.prefix_reuse and server_llm.capabilities.streaming


@pytest.mark.answers
def test_token_id_prompts_answer_as_the_servers_own_chat_endpoint(runtime, server_llm, vllm_server):
    ours = LLMClient(runtime, server_llm).text(QUESTION, Sampling(max_tokens=24, temperature=0.0))
    native = httpx.post(f"{vllm_server.base_url}/chat/completions", timeout=60, json={
        "model": SERVED_NAME, "max_tokens": 24, "temperature": 0.0,
        "messages": [{"role": m.role, "content": m.content} for m in QUESTION.messages]}).json()
    assert ours == native["choices"][0]["message"]["content"]
    assert ours.strip()


@pytest.mark.answers
def test_a_json_schema_holds_the_answer_to_it_on_the_server_and_in_process(runtime, server_llm, vllm_server):
    schema = {"type": "object", "properties": {"statement": {"type": "string"}, "does": {"type": "string"}},
              "required": ["statement", "does"]}
    sampling = Sampling(max_tokens=64, temperature=0.0, json_schema=json.dumps(schema))
    ours = LLMClient(runtime, server_llm).text(QUESTION, sampling)
    native = httpx.post(f"{vllm_server.base_url}/chat/completions", timeout=60, json={
        "model": SERVED_NAME, "max_tokens": 64, "temperature": 0.0, "structured_outputs": {"json": schema},
        "messages": [{"role": m.role, "content": m.content} for m in QUESTION.messages]}).json()
    assert ours == native["choices"][0]["message"]["content"]
    in_process = LLMClient(runtime, runtime.llm()).text(QUESTION, sampling)
    for answer in (ours, in_process):
        assert set(json.loads(answer)) == {"statement", "does"}


def test_a_prefix_tokenizes_as_the_start_of_the_full_prompt(server_llm):
    engine = server_llm.engine
    marked = Prompt(messages=(ChatMessage("system", "Answer from the context."),
                              ChatMessage("user", f"Question: what is pass?\nContext: {CONTEXT_MARK}")))
    full = engine.tokenize(Prompt(messages=(marked.messages[0], ChatMessage("user", "Question: what is pass?\n"
                                                                                     "Context: a null operation."))))
    prefix = engine.tokenize_prefix(PromptPrefix(marked, CONTEXT_MARK))
    assert len(prefix) > 10 and full[:len(prefix)] == prefix


def test_a_server_error_fails_that_request_with_the_servers_message_and_others_go_on(runtime, server_llm):
    client = LLMClient(runtime, server_llm)
    too_long = Prompt(text="word " * 4000)

    async def both():
        return await asyncio.gather(client.generate(too_long, Sampling(max_tokens=4)),
                                    client.generate(QUESTION, Sampling(max_tokens=4)), return_exceptions=True)

    failed, answered = runtime.run(both())
    assert isinstance(failed, ServerError) and failed.status == 400 and "2048" in str(failed)
    assert isinstance(answered, str) and answered


def test_an_early_stop_closes_the_request_and_the_server_aborts_it(runtime, server_llm, vllm_server):
    deltas = LLMClient(runtime, server_llm).deltas(QUESTION, Sampling(max_tokens=400, temperature=0.0))
    next(deltas)
    deltas.close()

    def running() -> float:
        metrics = httpx.get(f"{vllm_server.base_url.removesuffix('/v1')}/metrics", timeout=10).text
        lines = [line for line in metrics.splitlines() if line.startswith("vllm:num_requests_running")]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    for _ in range(50):
        if running() == 0:
            break
        runtime.run(asyncio.sleep(0.1))
    assert running() == 0


def test_an_unreachable_server_or_an_unserved_model_is_refused_saying_which(vllm_server):
    with pytest.raises(EngineUnavailableError, match=r"127.0.0.1:9/v1 did not answer .*start it"):
        OpenAIServerEngine(ServerEndpoint("http://127.0.0.1:9/v1", "m", timeout=2))
    with pytest.raises(EngineUnavailableError, match=r"serves \['smollm2-135m-instruct'\], not 'gpt-4o'"):
        OpenAIServerEngine(ServerEndpoint(vllm_server.base_url, "gpt-4o"))


def test_credentials_never_show(endpoint, caplog):
    with caplog.at_level(logging.DEBUG):
        spec = endpoint.spec()
        logging.getLogger("teola").info("endpoint %r spec %r", endpoint, spec)
    shown = f"{endpoint!r} {spec!r} {spec.id} {caplog.text}"
    assert "not-a-real-key" not in shown and "'***'" in repr(endpoint)
    assert endpoint.http_headers()["Authorization"] == "Bearer not-a-real-key"


def test_a_clients_request_parameters_become_its_sampling():
    sampling = request_sampling({"model": "m", "stream": False, "temperature": 0.0, "max_completion_tokens": 32,
                                 "stop": "END", "top_p": 0.9, "seed": None, "extra_body": {"top_k": 5}})
    assert sampling == Sampling(max_tokens=32, temperature=0.0, stop=("END",), extra=(("top_k", 5), ("top_p", 0.9)))
    assert request_sampling({"model": "m"}) == Sampling(max_tokens=None, temperature=None)


@pytest.fixture
def proxy(vllm_server):
    with FaultyProxy(vllm_server.base_url.removesuffix("/v1")) as proxy:
        yield proxy


def _engine_behind(proxy, **endpoint):
    engine = OpenAIServerEngine(ServerEndpoint(proxy.base_url, SERVED_NAME, **endpoint))
    proxy.completions = 0  # the engine's own probes are not what the tests count
    return engine


@pytest.mark.answers
def test_another_openai_compatible_server_gets_prompts_as_the_client_sends_them(runtime, proxy, vllm_server):
    proxy.faults.hide_vllm = True
    engine = _engine_behind(proxy)
    assert engine.features.vllm_version is None and not engine.features.tokenize
    assert not engine.capabilities.prefix_reuse  # no prefill splitting there
    assert engine.tokenize(QUESTION) is QUESTION
    ours = runtime.run(engine.complete(engine.tokenize(QUESTION), Sampling(max_tokens=24, temperature=0.0)))
    native = httpx.post(f"{vllm_server.base_url}/chat/completions", timeout=60, json={
        "model": SERVED_NAME, "max_tokens": 24, "temperature": 0.0,
        "messages": [{"role": m.role, "content": m.content} for m in QUESTION.messages]}).json()
    assert ours == native["choices"][0]["message"]["content"]


def test_a_status_the_openai_client_retries_is_retried_and_a_4xx_is_not(runtime, proxy):
    engine = _engine_behind(proxy)
    ids = engine.tokenize(QUESTION)
    proxy.faults.status_once = 503
    assert runtime.run(engine.complete(ids, Sampling(max_tokens=4)))
    assert proxy.completions == 2
    proxy.faults.status_once = 400
    with pytest.raises(ServerError, match="answered 400: injected by the test proxy"):
        runtime.run(engine.complete(ids, Sampling(max_tokens=4)))
    assert proxy.completions == 3


def test_a_cut_answer_is_retried_whole_but_a_stream_already_read_fails(runtime, proxy):
    engine = _engine_behind(proxy, max_retries=1)
    ids = engine.tokenize(QUESTION)
    proxy.faults.cut_after_chunks = 2
    with pytest.raises(EngineUnavailableError, match=r"ended before its \[DONE\]"):
        runtime.run(engine.complete(ids, Sampling(max_tokens=32)))
    assert proxy.completions == 2  # the whole text was asked for again once, and cut again

    async def read_stream():
        return [delta async for delta, _ in engine.generate(ids, Sampling(max_tokens=32))]

    proxy.completions = 0
    with pytest.raises(EngineUnavailableError, match=r"ended before its \[DONE\]"):
        runtime.run(read_stream())
    assert proxy.completions == 1  # its reader had seen text: not repeated


def test_a_slow_server_times_out_with_a_clear_error_and_nothing_hangs(runtime, proxy):
    engine = _engine_behind(proxy, timeout=1.0, max_retries=0)
    ids = engine.tokenize(QUESTION)
    proxy.faults.delay_s = 3.0
    with pytest.raises(EngineUnavailableError, match="ReadTimeout"):
        runtime.run(asyncio.wait_for(engine.complete(ids, Sampling(max_tokens=4)), 20))
