"""optimize() and the executor switch on real LangChain apps, on the real CPU engines: same answers,
and the Runnable protocol (async, batch, streaming, events, callbacks, errors) kept."""

import asyncio
import logging
from operator import itemgetter

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessageChunk
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableBranch, RunnableLambda
from langchain_core.tracers.context import collect_runs

from teola.runtime.engines.llm import PromptTooLongError
from teola.runtime.traces import record_traces
from teola_integrations.langchain import TeolaEmbeddings, TeolaVectorStore, executor, optimize, teola_executor
from teola_integrations.tools.langchain_apps import (ANSWER_PROMPT, APPS, RAG_PROMPT, TOO_MANY_CHUNKS, build_app,
                                                     ensemble_retriever, rag_answer, standard_retrieval_chain)
from teola_integrations.tools.run_trees import langchain_run_tree
from teola_integrations.tools.search_service import SearchService

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def store(corpus):
    docs = [Document(id=c.id, page_content=c.text, metadata={"topic": c.topic}) for c in corpus]
    return TeolaVectorStore.from_documents(docs, TeolaEmbeddings())


@pytest.fixture(scope="module")
def search_url(corpus):
    with SearchService(corpus, latency_s=0.2) as service:
        yield service.url


def _three_ways(make, value, keep=lambda output: output) -> dict[str, tuple]:
    """What the chain ``make()`` builds gives on ``value`` natively and under optimize(), sync and async
    (a chain each, so a chain that counts its calls starts afresh): each one's result (what ``keep``
    keeps of the output, or the error raised) and run tree."""
    seen = {}
    for mode, chain in (("native", make()), ("teola", optimize(make())), ("teola async", optimize(make()))):
        invoke = (lambda v: asyncio.run(chain.ainvoke(v))) if mode == "teola async" else chain.invoke
        with collect_runs() as collector:
            try:
                result = keep(invoke(value))
            except Exception as exc:  # the error is part of what is compared
                result = repr(exc)
        [root] = collector.traced_runs
        seen[mode] = (result, langchain_run_tree(root))
    return seen


async def _astream(chain, value) -> list:
    return [chunk async for chunk in chain.astream(value)]


def _warm(chain, value):
    """Run once unmeasured, then again: runs compared must see the same prefix-cache state (see
    teola_integrations.tools.compare.interleave)."""
    chain.invoke(value)
    return chain.invoke(value)


@pytest.mark.answers
@pytest.mark.parametrize("name", APPS)
def test_apps_answer_as_langchain_does(name, store, chat, questions, search_url):
    app = build_app(name, store, chat, search_url=search_url)
    reference = app.reference_chain
    fast = optimize(app.native)
    assert len(fast.lowered) >= (1 if name == "search" else 2)  # search: the API call runs as-is
    for question in questions[:2]:
        value = {"question": question.question}
        expected = _warm(reference, value)
        assert expected.strip()
        assert fast.invoke(value) == expected


def test_the_rag_prompt_prefix_is_prefilled_from_the_question_alone(store, chat, questions):
    fast = optimize(build_app("rag", store, chat).native)
    [warm] = [n for n in fast.plan if n.meta.warm]
    prefix_prompt = fast.plan[warm.inputs["prompt"].node]
    assert all("retrieve" not in str(source) for source in prefix_prompt.inputs.values())
    with record_traces() as traces:
        fast.invoke({"question": questions[0].question})
    assert warm.name in {span.node for span in traces[-1].spans}


def test_the_search_app_prefills_the_question_while_the_search_api_answers(store, chat, questions, search_url):
    fast = optimize(build_app("search", store, chat, search_url=search_url).native)
    with record_traces() as traces:
        fast.invoke({"question": questions[0].question})
    spans = {span.node: span for span in traces[-1].spans}
    [search] = [s for s in spans.values() if s.op == "call" and s.end - s.start >= 0.2]  # the 200 ms API call
    [warm] = [s for s in spans.values() if s.op == "prefill" and "prefix" in s.node]
    assert warm.end < search.end


def test_the_runnable_protocol_is_kept(store, chat, questions):
    app = build_app("rag", store, chat)
    fast = optimize(app.native)
    value = {"question": questions[1].question}
    answer = _warm(app.native, value)
    assert fast.invoke(value) == answer
    assert asyncio.run(fast.ainvoke(value)) == answer
    one_at_a_time = {"max_concurrency": 1}  # concurrent requests would batch: vLLM on CPU is not batch-invariant
    assert fast.batch([value, value], one_at_a_time) == [answer, answer]
    assert asyncio.run(fast.abatch([value, value], one_at_a_time)) == [answer, answer]
    chunks = list(fast.stream(value))
    assert "".join(chunks) == answer and len(chunks) > 1  # token by token, as the native chain streams

    async def streamed():
        chunks = [chunk async for chunk in fast.astream(value)]
        events = [event async for event in fast.astream_events(value, version="v2")]
        return chunks, events

    chunks, events = asyncio.run(streamed())
    assert "".join(chunks) == answer and len(chunks) > 1
    assert events[0]["event"] == "on_chain_start" and events[-1]["event"] == "on_chain_end"
    assert "".join(e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream") == answer
    assert events[-1]["data"]["output"] == answer
    with collect_runs() as collector:
        fast.invoke(value, {"run_name": "rag", "tags": ["mine"], "metadata": {"user": "u1"}})
    [root] = collector.traced_runs
    assert root.name == "rag" and "mine" in root.tags and root.extra["metadata"]["user"] == "u1"
    assert root.outputs == {"output": answer}
    with collect_runs() as collector:
        assert "".join(fast.stream(value, {"run_name": "rag"})) == answer
    [root] = collector.traced_runs
    assert root.name == "rag" and root.outputs == {"output": answer}
    names = {row[1] for row in langchain_run_tree(root)}
    assert {"format_docs", "VectorStoreRetriever", "StrOutputParser"} <= names  # the parser's as in a native stream


@pytest.mark.parametrize("name", ["rag", "fusion", "contextual"])  # every step kind of the five apps is in these
def test_callbacks_see_the_run_tree_langchain_reports(name, store, chat, questions):
    """Every step's run (sequences, parallels, assign, lambdas, retrievers and their .map(), prompts,
    models, parsers, steps run as-is), nested, named, typed and tagged as natively, with the same
    inputs and outputs, sync (and async where steps run side by side); and in a streamed invocation
    the runs of a native stream (every model's streamed generation, the answer's parser's run on the
    streamed chunks). Not marked ``answers``: the answers' equality on other CPU paths is
    test_apps_answer_as_langchain_does's."""
    app = build_app(name, store, chat)
    fast = optimize(app.native)
    value = {"question": questions[1].question}
    app.native.invoke(value)  # the native run recorded is the second, as _warm's

    invocations = [("native", app.native.invoke), ("teola", fast.invoke),
                   ("native stream", lambda v: list(app.native.stream(v))), ("teola stream", lambda v: list(fast.stream(v)))]
    if name in ("rag", "contextual"):
        invocations += [("teola async", lambda v: asyncio.run(fast.ainvoke(v))),
                        ("teola stream async", lambda v: asyncio.run(_astream(fast, v)))]
    trees = {}
    for mode, invoke in invocations:
        with collect_runs() as collector:
            invoke(value)
        [root] = collector.traced_runs
        trees[mode] = langchain_run_tree(root)
    assert len(trees["native"]) > 5
    assert all(tree == trees["native stream" if "stream" in mode else "native"] for mode, tree in trees.items())
    assert trees["native stream"] != trees["native"]  # a stream's runs are not an invoke's (streamed generations)


@pytest.mark.parametrize("form", ["RunnableBranch", "RunnableLambda"])
def test_a_route_runs_the_pipeline_langchain_picks_on_the_engines(form, store, chat, questions):
    """Routing as LangChain's routing guide writes it, a RunnableBranch or a lambda returning the chain
    to run, at the chain's root: a question about a statement is answered from retrieval, any other
    from the model alone; the picked pipeline's retrieval and LLM call run on the engines, with the
    native answer and run tree, and a stream streams the picked route's answer token by token with
    a native stream's run tree (the route app's route depends on the model's class, so this one
    routes on the question to take both routes on every CPU)."""
    retrieved = rag_answer(store.as_retriever(search_kwargs={"k": 3}), RAG_PROMPT | chat | StrOutputParser())
    plain = ANSWER_PROMPT | chat | StrOutputParser()

    def route(x):
        return retrieved if "statement" in x["question"] else plain

    chain = RunnableBranch((lambda x: "statement" in x["question"], retrieved), plain) if form == "RunnableBranch" \
        else RunnableLambda(route)
    fast = optimize(chain)
    assert len(fast.lowered) == 3  # the retrieval and both routes' LLM calls
    for question, retrieves in ((questions[0], True), (questions[4], False)):
        value = {"question": question.question}
        _warm(chain, value)
        trees = _three_ways(lambda: chain, value)
        assert trees["teola"] == trees["native"] and trees["teola async"] == trees["native"]
        assert ("VectorStoreRetriever" in {row[1] for row in trees["native"][1]}) is retrieves
        streams = {}
        for mode, stream in (("native", chain.stream), ("teola", fast.stream),
                             ("teola async", lambda v: asyncio.run(_astream(fast, v)))):
            with collect_runs() as collector:
                chunks = list(stream(value))
            streams[mode] = ("".join(chunks), langchain_run_tree(collector.traced_runs[0]))
            assert len(chunks) > 1  # the picked route's answer streams token by token, as natively
        assert streams["teola"] == streams["native"] == streams["teola async"]
        assert streams["native"][0] == trees["native"][0]


@pytest.mark.answers
def test_langchains_standard_retrieval_chain_runs_on_the_engines_with_its_run_tree(store, chat, questions):
    """create_retrieval_chain(retriever, create_stuff_documents_chain(model, prompt)) (langchain-classic):
    its retrieval and LLM call are lowered through the chains' own ``.with_config`` bindings, and it
    returns the native input, documents and answer, with the native run tree (runs named
    retrieval_chain, retrieve_documents, stuff_documents_chain, format_inputs)."""
    chain = standard_retrieval_chain(store.as_retriever(search_kwargs={"k": 3}), chat)
    fast = optimize(chain)
    assert len(fast.lowered) == 2
    value = {"input": questions[2].question}
    _warm(chain, value)
    seen = _three_ways(lambda: chain, value,
                       lambda output: (output["input"], [doc.id for doc in output["context"]], output["answer"]))
    assert seen["teola"] == seen["native"] and seen["teola async"] == seen["native"]
    assert "Error" not in repr(seen["native"][0])
    names = {row[1] for row in seen["native"][1]}
    assert seen["native"][1][0][1] == "retrieval_chain"
    assert {"retrieve_documents", "stuff_documents_chain", "format_inputs"} <= names


@pytest.mark.answers
def test_a_chain_whose_context_is_too_long_falls_back_on_the_engines_as_langchain_does(store, chat, questions):
    """``with_fallbacks`` (the fallback app, inside a chain): retrieving 40 chunks makes a prompt too
    long for the model, so the engine fails that LLM call (a lowered one) and the fallback, the
    question alone, answers; the same answer and run tree as natively, where the failed model run
    reports the error."""
    chain = {"question": itemgetter("question")} | build_app("fallback", store, chat).native  # its runs beside the step's
    fast = optimize(chain)
    assert len(fast.lowered) == 3
    value = {"question": questions[3].question}
    _warm(chain, value)
    seen = _three_ways(lambda: chain, value)
    assert seen["teola"] == seen["native"] and seen["teola async"] == seen["native"]
    failed = [row for row in seen["native"][1] if row[-1]]
    assert {row[1] for row in failed} == {"RunnableSequence", "TeolaChatModel"}  # the primary and its model


@pytest.mark.answers
def test_a_retried_chain_runs_its_attempts_on_the_engines_as_langchain_does(store, chat, questions):
    """``with_retry``: a step that fails once before the LLM call, then the second attempt's lowered
    retrieval and LLM call answer; and a prompt too long for the model fails both attempts with the
    engine's error. The same answers, errors and run trees (``retry:attempt:2``) as natively."""

    def once_failing():
        calls = []

        def check(value):
            calls.append(value)
            if len(calls) == 1:
                raise ConnectionError("the first call is dropped")
            return value

        return RunnableLambda(check)

    def chains():
        answer = once_failing() | build_app("rag", store, chat).native
        too_long = rag_answer(store.as_retriever(search_kwargs={"k": TOO_MANY_CHUNKS}), RAG_PROMPT | chat | StrOutputParser())
        return {"answer": answer, "too long": too_long}

    value = {"question": questions[5].question}
    _warm(build_app("rag", store, chat).native, value)
    for name in ("answer", "too long"):
        seen = _three_ways(lambda: chains()[name].with_retry(stop_after_attempt=2, wait_exponential_jitter=False), value)
        assert seen["teola"] == seen["native"] and seen["teola async"] == seen["native"]
        assert any("retry:attempt:2" in row[3] for row in seen["native"][1])
        assert ("PromptTooLongError" in seen["native"][0]) is (name == "too long")


@pytest.mark.answers
def test_an_ensemble_of_retrievers_runs_them_side_by_side_on_the_engines(store, chat, questions):
    """langchain-classic's EnsembleRetriever of a TeolaVectorStore retriever and an InMemoryVectorStore
    one (on the same embedding model; the ``ensemble`` app's), in the rag chain: both retrievals lowered, fused by the
    ensemble's own weighted reciprocal rank; the native documents, answer and run tree."""
    chain = rag_answer(ensemble_retriever(store, 3), RAG_PROMPT | chat | StrOutputParser())
    assert len(optimize(chain).lowered) == 3
    value = {"question": questions[6].question}
    _warm(chain, value)
    seen = _three_ways(lambda: chain, value)
    assert seen["teola"] == seen["native"] and seen["teola async"] == seen["native"]
    assert "EnsembleRetriever" in {row[1] for row in seen["native"][1]} and "Error" not in seen["native"][0]


@pytest.mark.answers
def test_a_map_of_an_llm_call_runs_its_items_together_and_no_items_without_a_call(chat, questions):
    """``(prompt | model | parser).map()`` (the contextual app's, whose answers and run trees the apps'
    tests compare): one batched call on the engines; on two items and on none, the native output and run tree."""
    situate = ChatPromptTemplate.from_messages([("human", "In one sentence, what is {topic} in Python?")])

    def make(topics):
        return RunnableLambda(lambda question: [{"topic": t} for t in topics]) | (situate | chat | StrOutputParser()).map()

    assert optimize(make(["pass"])).lowered[-1].endswith("(ChatPromptTemplate | TeolaChatModel | StrOutputParser).map()")
    for topics in (["the pass statement", "a tuple"], []):
        _warm(make(topics), questions[0].question)
        seen = _three_ways(lambda: make(topics), questions[0].question)
        assert seen["teola"] == seen["native"] and seen["teola async"] == seen["native"]
        assert len(seen["native"][0]) == len(topics)


def test_a_chat_chain_without_a_parser_streams_message_chunks(chat, questions):
    chain = ChatPromptTemplate.from_messages([("human", "Answer in one sentence: {question}")]) | chat
    fast = optimize(chain)
    value = {"question": questions[0].question}
    expected = _warm(chain, value)
    chunks = list(fast.stream(value))
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks) and len(chunks) > 1
    assert sum(chunks[1:], chunks[0]).content == expected.content


def test_an_invoke_watched_by_a_token_streaming_handler_streams_its_models_tokens_as_langchain_does(chat, questions):
    chain = ChatPromptTemplate.from_messages([("human", "Answer in one sentence: {question}")]) | chat
    value = {"question": questions[0].question}
    _warm(chain, value)

    def model_tokens(inner) -> list[str]:  # astream_events' handler watches the invoke inside the lambda
        events = asyncio.run(_events(RunnableLambda(lambda v: inner.invoke(v)), value))
        return [e["data"]["chunk"].content for e in events if e["event"] == "on_chat_model_stream"]

    native = model_tokens(chain)
    assert len(native) > 2
    assert model_tokens(optimize(chain)) == native
    with teola_executor():
        assert model_tokens(chain) == native


async def _events(runnable, value) -> list[dict]:
    return [event async for event in runnable.astream_events(value, version="v2")]


def test_a_failing_step_fails_the_stream_with_its_own_error(store, chat, questions):
    def reject(value: dict) -> dict:
        raise ValueError("no question")

    app = build_app("rag", store, chat)
    fast = optimize(RunnableLambda(reject) | app.native)
    with pytest.raises(ValueError, match="no question"):
        list(fast.stream({"question": questions[0].question}))


def test_the_executor_switch_runs_engine_chains_as_optimized_plans(store, chat, questions):
    app = build_app("rag", store, chat)
    value = {"question": questions[2].question}
    answer = _warm(app.native, value)
    before = executor.ROUTED["optimized"]
    with teola_executor():
        assert app.native.invoke(value) == answer
        assert asyncio.run(app.native.ainvoke(value)) == answer
        assert app.native.batch([value, value], {"max_concurrency": 1}) == [answer, answer]
    assert executor.ROUTED["optimized"] >= before + 4


def test_a_failing_step_raises_its_own_error(store, chat, questions):
    def reject(answer: str) -> str:
        raise ValueError(f"rejected: {answer[:10]}")

    fast = optimize(build_app("rag", store, chat).native | RunnableLambda(reject))
    with pytest.raises(ValueError, match="rejected"):
        fast.invoke({"question": questions[0].question})


def test_a_question_too_long_for_the_model_fails_with_the_native_error(store, chat, questions):
    """The native error, and the native run tree of a failure: the model's run fails as an LLM run,
    its chain runs fail with it, the parser's never starts."""
    chain = build_app("rag", store, chat).native
    huge = {"question": "Explain the pass statement. " * 2000}
    trees = []
    for app in (chain, optimize(chain)):
        with pytest.raises(PromptTooLongError, match="retrieve fewer or shorter chunks") as failed, \
                collect_runs() as collector:
            app.invoke(huge)
        trees.append((str(failed.value), [(row[:4], row[-1]) for row in langchain_run_tree(collector.traced_runs[0])]))
    native, teola = trees
    assert ((0, "RunnableSequence", "chain", ()), True) in native[1]
    assert (("TeolaChatModel", "llm"), True) in {(row[1:3], failed) for row, failed in native[1]}
    assert teola == native


def test_a_chain_without_engine_parts_runs_as_is_with_one_log_line(caplog):
    chain = RunnableLambda(lambda x: x * 2) | RunnableLambda(lambda x: x + 1)
    with caplog.at_level(logging.WARNING, logger="teola_integrations.langchain.runnable"):
        fast = optimize(chain)
    assert len(caplog.records) == 1 and "run as-is" in caplog.records[0].getMessage()
    assert fast.invoke(3) == chain.invoke(3) == 7
