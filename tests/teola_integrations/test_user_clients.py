"""Apps built on the user's own classes (OpenAILike, ChatOpenAI, HuggingFaceEmbedding, the default
stores) against a real vLLM server on loopback: optimize() lowers them as they are, same answers."""

import asyncio
import logging

import pytest
from llama_index.core.query_engine import RetrieverQueryEngine

from teola.runtime.traces import record_traces
from teola_integrations import add_server_replicas
from teola_integrations.langchain import optimize as optimize_chain
from teola_integrations.llama_index import optimize
from teola_integrations.tools.demo_app import build_app, build_index
from teola_integrations.tools.langchain_apps import build_app as build_chain
from teola_integrations.tools.run_trees import LlamaIndexRecorder
from teola_integrations.tools.user_apps import build_user_store, chat_openai, hf_embedding, openai_like, vllm_openai
from teola_integrations.tools.faulty_proxy import FaultyProxy
from teola_integrations.tools.vllm_server import SERVED_NAME

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def user_index(corpus):
    return build_index(corpus, hf_embedding())


def _warm_native(query_engine, question):
    """Asked twice: both runs compared must see the server's prefix cache in the same state."""
    query_engine.query(question)
    return query_engine.query(question)


def _ids(response) -> list[str]:
    return [n.node.node_id for n in response.source_nodes]


def _assert_same(native, fast):
    assert str(fast) == str(native)
    assert _ids(fast) == _ids(native)
    assert fast.metadata == native.metadata


@pytest.mark.answers
def test_naive_rag_on_the_users_clients_is_lowered_and_answers_as_native(user_index, vllm_server, questions):
    query_engine = build_app(user_index, openai_like(vllm_server.base_url, max_tokens=48), "naive")
    fast = optimize(query_engine)
    assert fast.fallbacks == []
    engines = {node.engine.name for node in fast.plan if node.engine}
    assert f"llm:{vllm_server.base_url}#{SERVED_NAME}@" in " ".join(engines)
    assert any(name.startswith("embedding:llama_index:HuggingFaceEmbedding:") for name in engines)
    assert "synthesize.step0.prefill_prefix" in {node.name for node in fast.plan}  # vLLM's prefix cache: prefill split
    for question in questions[:2]:
        native = _warm_native(query_engine, question.question)
        assert native.response.strip() and len(native.source_nodes) == 3
        _assert_same(native, fast.query(question.question))
    trees = []
    for engine in (query_engine, fast):  # the chat client's and the HF embedding's spans and events too
        with LlamaIndexRecorder() as recorder:
            engine.query(questions[1].question)
        trees.append(recorder.tree())
    assert "OpenAILike.chat" in {row[1] for row in trees[0]} and trees[1] == trees[0]


@pytest.mark.answers
def test_a_chat_engine_on_the_users_clients_is_lowered_and_holds_the_conversation_as_native(user_index, vllm_server,
                                                                                             questions):
    """``as_chat_engine()`` on an OpenAILike chat client: the condensation goes out as the client's
    ``complete`` sends it (a user message), and two turns from an empty memory answer as natively."""
    chat_engine = user_index.as_chat_engine(llm=openai_like(vllm_server.base_url, max_tokens=48), similarity_top_k=2)
    fast = optimize(chat_engine)
    assert fast.fallbacks == [] and {"condense", "retrieve.embed", "synthesize.step0"} <= {n.name for n in fast.plan}
    turns = [questions[1].question, "What happens to the return value then?"]

    def talk(engine):
        engine.reset()
        return [(str(r), _ids(r), r.sources[0].raw_input) for r in map(engine.chat, turns)]

    talk(chat_engine)
    native = talk(chat_engine)
    assert native[1][2]["message"] != turns[1]  # the second turn was condensed
    assert talk(fast) == native


@pytest.mark.answers
def test_a_completion_client_sends_text_prompts_and_answers_as_native(user_index, vllm_server, questions):
    query_engine = build_app(user_index, openai_like(vllm_server.base_url, max_tokens=32, chat=False), "naive")
    fast = optimize(query_engine)
    assert fast.fallbacks == []
    question = questions[1].question
    _assert_same(_warm_native(query_engine, question), fast.query(question))


@pytest.mark.answers
def test_advanced_rag_on_the_users_clients_runs_its_llm_calls_together_and_answers_as_native(
        user_index, vllm_server, questions):
    query_engine = build_app(user_index, openai_like(vllm_server.base_url, max_tokens=48), "advanced")
    assert isinstance(query_engine, RetrieverQueryEngine)
    fast = optimize(query_engine)
    assert fast.fallbacks == []
    question = questions[0].question
    native = _warm_native(query_engine, question)
    with record_traces() as traces:
        _assert_same(native, fast.query(question))
    spans = {s.node: s for s in traces[0].spans}
    assert spans["retrieve0.search"].end < spans["expand.decode"].end
    assert spans["postprocess0.batch1"].start < spans["postprocess0.batch0"].end
    trees = []
    for engine in (query_engine, fast):  # the client's own complete and chat spans, its overrides' too
        with LlamaIndexRecorder() as recorder:
            engine.query(question)
        trees.append(recorder.tree())
    assert {"OpenAILike.complete", "QueryFusionRetriever._retrieve", "LLMRerank._postprocess_nodes"} <= {row[1] for row in trees[0]}
    assert trees[1] == trees[0]


@pytest.mark.answers
def test_a_langchain_rag_chain_on_chat_openai_and_an_in_memory_store_is_lowered_and_answers_as_native(vllm_server, questions):
    chain = build_chain("rag", build_user_store(), chat_openai(vllm_server.base_url, max_tokens=32)).native
    fast = optimize_chain(chain)
    assert fast.lowered == ["retrieve2: VectorStoreRetriever over InMemoryVectorStore",
                            "generate5: ChatPromptTemplate | ChatOpenAI | StrOutputParser"]
    question = {"question": questions[0].question}
    chain.invoke(question)
    assert fast.invoke(question) == chain.invoke(question)


@pytest.mark.answers
def test_a_langchain_rag_chain_on_vllm_openai_is_lowered_and_answers_as_native(vllm_server, questions):
    chain = build_chain("rag", build_user_store(corpus_limit=20), vllm_openai(vllm_server.base_url, max_tokens=32)).native
    fast = optimize_chain(chain)
    assert fast.lowered[-1] == "generate5: ChatPromptTemplate | VLLMOpenAI | StrOutputParser"
    question = {"question": questions[0].question}
    chain.invoke(question)
    assert fast.invoke(question) == chain.invoke(question)


@pytest.mark.answers
def test_langchain_branches_on_chat_openai_run_together_and_answer_as_their_parallel_form(vllm_server, questions):
    app = build_chain("branches", build_user_store(corpus_limit=10), chat_openai(vllm_server.base_url, max_tokens=32))
    fast = optimize_chain(app.native)
    assert len(fast.lowered) == 3
    question = {"question": questions[2].question}
    app.reference_chain.invoke(question)
    assert fast.invoke(question) == app.reference_chain.invoke(question)


@pytest.mark.answers
def test_on_another_openai_compatible_server_prefill_splitting_is_left_out_with_one_log_line(
        user_index, vllm_server, questions, caplog):
    with FaultyProxy(vllm_server.base_url.removesuffix("/v1")) as proxy:
        proxy.faults.hide_vllm = True
        query_engine = build_app(user_index, openai_like(proxy.base_url, max_tokens=32), "naive")
        with caplog.at_level(logging.INFO):
            fast = optimize(query_engine)
        left_out = [r.getMessage() for r in caplog.records if "is left out" in r.getMessage()]
        assert len(left_out) == 1 and "split_prefill" in left_out[0] and "prefix reuse" in left_out[0]
        assert fast.fallbacks == [] and "synthesize.step0.prefill_prefix" not in {node.name for node in fast.plan}
        question = questions[3].question
        _assert_same(_warm_native(query_engine, question), fast.query(question))


def test_a_server_that_does_not_answer_at_optimize_is_a_clear_error(user_index):
    from teola.runtime.errors import EngineUnavailableError

    query_engine = build_app(user_index, openai_like("http://127.0.0.1:9/v1"), "naive")
    with pytest.raises(EngineUnavailableError, match=r"the LLM server at http://127.0.0.1:9/v1 did not answer"):
        optimize(query_engine)


def test_under_the_executor_switch_a_chain_whose_server_is_down_fails_as_it_does_natively(caplog):
    import openai
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from teola_integrations.langchain.executor import teola_executor

    model = chat_openai("http://127.0.0.1:9/v1").model_copy(update={"max_retries": 0})
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | model | StrOutputParser()
    with teola_executor(), caplog.at_level(logging.WARNING, logger="teola_integrations"):
        with pytest.raises(openai.APIConnectionError):
            chain.invoke({"question": "hi"})
    assert any("runs level by level" in r.getMessage() and "127.0.0.1:9/v1 did not answer" in r.getMessage()
               for r in caplog.records)


@pytest.mark.answers
def test_an_app_whose_server_has_replicas_spreads_its_queries_over_them_and_answers_as_native(
        user_index, vllm_server, questions):
    root = vllm_server.base_url.removesuffix("/v1")
    with FaultyProxy(root) as server, FaultyProxy(root) as replica:  # two servers of the model, as the app sees them
        query_engine = build_app(user_index, openai_like(server.base_url, max_tokens=32), "naive")
        add_server_replicas(server.base_url, [replica.base_url])
        try:
            fast = optimize(query_engine)
        finally:
            add_server_replicas(server.base_url, [])
        assert any(replica.base_url in node.engine.name for node in fast.plan if node.engine)
        asked = [q.question for q in questions[:4]]
        natives = [_warm_native(query_engine, question) for question in asked]
        server.completions = replica.completions = 0

        async def all_at_once():
            return await asyncio.gather(*(fast.aquery(question) for question in asked))

        for native, response in zip(natives, asyncio.run(all_at_once())):
            assert response.response.strip() and _ids(response) == _ids(native)
        assert server.completions >= 1 and replica.completions >= 1
        for question, native in zip(asked[:2], natives):  # one at a time: the text too is the native one
            _assert_same(native, fast.query(question))
