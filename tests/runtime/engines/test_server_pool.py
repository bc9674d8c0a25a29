"""Several servers of one model as one engine: two loopback proxies in front of the real vLLM server
stand for two servers (each counts the completions it forwards), and a closed proxy for one that went down."""

import asyncio
import logging

import pytest

from teola.optimizer.values import ChatMessage, Prompt, Sampling
from teola.runtime.engines.openai_server import OpenAIServerEngine, ServerEndpoint
from teola.runtime.engines.server_pool import (ServerPoolEngine, add_server_replicas, endpoint_spec,
                                               server_replicas)
from teola.runtime.errors import EngineUnavailableError
from teola_integrations.tools.faulty_proxy import FaultyProxy
from teola_integrations.tools.vllm_server import SERVED_NAME

pytestmark = pytest.mark.engines

QUESTIONS = [Prompt(messages=(ChatMessage("system", "Answer in one sentence."), ChatMessage("user", question)))
             for question in ("What does the pass statement do in Python?", "What is a Python list?",
                              "How does a for loop end?", "What does the with statement do?")]
GREEDY = Sampling(max_tokens=16, temperature=0.0)


@pytest.fixture
def proxies(vllm_server):
    root = vllm_server.base_url.removesuffix("/v1")
    with FaultyProxy(root) as first, FaultyProxy(root) as second:
        yield first, second


def _endpoint(url: str, **settings) -> ServerEndpoint:
    return ServerEndpoint(url, SERVED_NAME, **settings)


def _answers(runtime, engine, prompts, tokenize=None) -> list[str]:
    """The answers to ``prompts``, asked all at once (tokenized by ``tokenize``, default the engine's)."""
    ids = [(tokenize or engine.tokenize)(prompt) for prompt in prompts]

    async def all_at_once():
        return await asyncio.gather(*(engine.complete(prompt_ids, GREEDY) for prompt_ids in ids))

    return runtime.run(all_at_once())


@pytest.mark.answers
def test_requests_in_flight_spread_over_the_servers_and_each_answers_as_one_server_does(runtime, proxies, vllm_server):
    pool = ServerPoolEngine([_endpoint(proxy.base_url) for proxy in proxies])
    assert pool.capabilities.prefix_reuse and len(pool.members) == 2
    for proxy in proxies:
        proxy.completions = 0  # the probes are not what is counted
    assert all(_answers(runtime, pool, QUESTIONS))
    assert [proxy.completions for proxy in proxies] == pool.requests_per_server
    assert min(pool.requests_per_server) >= 1 and sum(pool.requests_per_server) == len(QUESTIONS)
    # one at a time (a batch's composition may move a near-tie): the same text as one server gives
    one_server = OpenAIServerEngine(_endpoint(vllm_server.base_url))
    for question in QUESTIONS:
        assert _answers(runtime, pool, [question]) == _answers(runtime, one_server, [question])


def test_a_server_that_goes_down_is_passed_over_and_its_requests_go_to_the_others(runtime, proxies, caplog):
    up, going_down = proxies
    pool = ServerPoolEngine([_endpoint(going_down.base_url, max_retries=0), _endpoint(up.base_url, max_retries=0)])
    tokenize = pool.members[1].tokenize
    going_down.__exit__(None, None, None)
    with caplog.at_level(logging.WARNING):
        answers = _answers(runtime, pool, QUESTIONS[:1], tokenize) + _answers(runtime, pool, QUESTIONS[1:], tokenize)
    assert all(answers)
    assert pool.requests_per_server[0] == 1  # the first request found it down; the rest went to the other
    assert pool.requests_per_server[1] == len(QUESTIONS)
    assert sum("go to the other servers" in r.getMessage() for r in caplog.records) == 1
    assert pool.tokenize(QUESTIONS[0]) == tokenize(QUESTIONS[0])  # tokenizing too passes over the server down


def test_a_server_down_at_start_leaves_the_others_serving_and_none_answering_is_refused(runtime, vllm_server, caplog):
    with caplog.at_level(logging.WARNING):
        pool = ServerPoolEngine([_endpoint("http://127.0.0.1:9/v1", timeout=2), _endpoint(vllm_server.base_url)])
    assert [m.endpoint.base_url for m in pool.members] == [vllm_server.base_url]
    assert "127.0.0.1:9/v1 did not answer" in caplog.text and "share the load without it" in caplog.text
    assert _answers(runtime, pool, QUESTIONS[:1])[0]
    with pytest.raises(EngineUnavailableError, match=r"none of the servers answered: .*127.0.0.1:9/v1.*127.0.0.1:10/v1"):
        ServerPoolEngine([_endpoint("http://127.0.0.1:9/v1", timeout=2), _endpoint("http://127.0.0.1:10/v1", timeout=2)])


def test_replicas_of_a_url_make_its_clients_engine_a_pool_and_an_empty_list_undoes_it():
    endpoint = _endpoint("http://127.0.0.1:8000/v1/")
    assert endpoint_spec(endpoint) == endpoint.spec()
    add_server_replicas("http://127.0.0.1:8000/v1", ["http://127.0.0.1:8001/v1/", "http://127.0.0.1:8001/v1"])
    try:
        assert server_replicas("http://127.0.0.1:8000/v1/") == ("http://127.0.0.1:8001/v1",)
        spec = endpoint_spec(endpoint)
        assert spec.id != endpoint.spec().id and spec.model.endswith("+http://127.0.0.1:8001/v1")
        assert spec.build.func is ServerPoolEngine
        assert [e.base_url for e in spec.build.args[0]] == ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]
        with pytest.raises(ValueError, match="listed as its own replica"):
            add_server_replicas("http://127.0.0.1:8000/v1", ["http://127.0.0.1:8000/v1/"])
    finally:
        add_server_replicas("http://127.0.0.1:8000/v1", [])
    assert endpoint_spec(endpoint) == endpoint.spec()
