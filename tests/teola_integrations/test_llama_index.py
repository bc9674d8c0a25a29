"""optimize() on real LlamaIndex apps over the real corpus, on the real CPU engines: same answers."""

import asyncio
import logging

import pytest
from llama_index.core import get_response_synthesizer
from llama_index.core.callbacks import TokenCountingHandler
from llama_index.core.indices.prompt_helper import PromptHelper
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.indices.query.query_transform import HyDEQueryTransform
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.query_engine import (CitationQueryEngine, CustomQueryEngine, RetrieverQueryEngine,
                                           RouterQueryEngine, TransformQueryEngine)
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.tools import QueryEngineTool
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

from teola.adapters.llama_index.refine import refine_pieces
from teola.runtime.traces import record_traces
from teola_integrations.tools.demo_app import ROUTER_TOOLS, build_app, build_index
from teola_integrations.llama_index import UnsupportedPipelineError, optimize
from teola_integrations.tools.run_trees import LlamaIndexRecorder, callback_managers, traced
from teola_integrations.tools.search_service import SearchService

pytestmark = pytest.mark.engines


@pytest.fixture(scope="session", params=["simple", "faiss"])
def index(request, corpus, embed_model):
    if request.param == "simple":  # the shared one: embedding the corpus takes half a minute
        return request.getfixturevalue("simple_index")
    return build_index(corpus, embed_model, store=request.param)


def _ids(response):
    return [n.node.node_id for n in response.source_nodes]


def _warm_native(query_engine, question):
    """Ask once unmeasured, then again: vLLM's output for a prompt whose prefix is cached can differ
    (near-tie greedy picks) from a cold run's, so both runs compared must see the same cache state."""
    query_engine.query(question)
    return query_engine.query(question)


def _assert_same(native, fast):
    assert str(fast) == str(native)
    assert _ids(fast) == _ids(native)
    assert fast.metadata == native.metadata


@pytest.mark.answers
def test_same_answers_and_sources_as_native(index, llm, questions):
    query_engine = index.as_query_engine(llm=llm, similarity_top_k=3)
    fast = optimize(query_engine)
    assert fast.fallbacks == []
    assert {n.op.value for n in fast.plan} >= {"embed", "search", "prefill", "decode"}
    for question in questions[:4]:
        native = _warm_native(query_engine, question.question)
        with record_traces() as traces:
            _assert_same(native, fast.query(question.question))
        assert native.response.strip() and native.response != "Empty Response"
        spans = {s.node for s in traces[0].spans}
        assert {"retrieve.embed", "retrieve.search", "synthesize.step0"} <= spans  # step0: the one LLM call's decode


# What each app's native trees hold that the comparison must cover (sync, async).
_SPANS_OF = {"naive": ({"VectorIndexRetriever.retrieve"}, {"VectorIndexRetriever.aretrieve"}),
             "advanced": ({"QueryFusionRetriever._retrieve", "LLMRerank._postprocess_nodes", "TeolaLLM.complete"},
                          {"QueryFusionRetriever.aretrieve", "run_jobs.<locals>.worker", "TeolaLLM.acomplete"}),
             "hyde": ({"TransformQueryEngine._query", "HyDEQueryTransform._run", "RetrieverQueryEngine.query"},
                      {"TransformQueryEngine._aquery", "HyDEQueryTransform._run", "RetrieverQueryEngine.aquery"}),
             "tree": ({"TreeSummarize.get_response", "TeolaLLM.predict"}, {"TreeSummarize.aget_response"}),
             "simple": ({"SimpleSummarize.get_response", "TeolaLLM.predict"},
                        {"SimpleSummarize.aget_response", "TeolaLLM.apredict"}),
             "accumulate": ({"Accumulate.get_response", "TeolaLLM.predict"}, {"Accumulate.aget_response", "TeolaLLM.apredict"}),
             "refine": ({"Refine.get_response", "TeolaLLM.predict"}, {"Refine.aget_response", "TeolaLLM.apredict"}),
             "subquestion": ({"SubQuestionQueryEngine._query", "RetrieverQueryEngine.query", "TeolaLLM.predict"},
                             {"SubQuestionQueryEngine._aquery", "RetrieverQueryEngine.aquery", "TeolaLLM.apredict"}),
             "as-is": ({"OwnRetriever._retrieve", "SimilarityPostprocessor._postprocess_nodes",
                        "CompactAndRefine.synthesize"},
                       {"OwnRetriever.aretrieve", "CompactAndRefine.asynthesize", "TeolaLLM.apredict"}),
             "citation": ({"CitationQueryEngine._query", "SentenceSplitter.split_text", "CompactAndRefine.synthesize"},
                          {"CitationQueryEngine._aquery", "SentenceSplitter.split_text", "TeolaLLM.apredict"}),
             "router": ({"RouterQueryEngine._query", "RetrieverQueryEngine.query", "TeolaLLM.predict"},
                        {"RouterQueryEngine._aquery", "RetrieverQueryEngine.aquery", "TeolaLLM.apredict"}),
             "whole": ({"Shouting.query", "RetrieverQueryEngine.query"}, {"Shouting.aquery"})}


class OwnRetriever(BaseRetriever):
    """A user's own retriever: Teola runs it as-is."""

    def __init__(self, inner: BaseRetriever) -> None:
        super().__init__()
        self.inner = inner

    def _retrieve(self, query_bundle):
        return self.inner.retrieve(query_bundle)


def _app(index, llm, kind: str):
    if kind == "hyde":
        return TransformQueryEngine(build_app(index, llm), query_transform=HyDEQueryTransform(llm=llm))
    if kind == "tree":  # several first-level calls, then a level above them
        synth = get_response_synthesizer(llm=llm, response_mode="tree_summarize",
                                         prompt_helper=PromptHelper(context_window=600, num_output=48))
        return index.as_query_engine(llm=llm, similarity_top_k=4, response_synthesizer=synth)
    if kind == "as-is":  # a retriever and a postprocessor Teola runs as-is, a context needing refine steps
        synth = get_response_synthesizer(llm=llm, response_mode="compact",
                                         prompt_helper=PromptHelper(context_window=1100, num_output=48))
        return RetrieverQueryEngine(OwnRetriever(index.as_retriever(similarity_top_k=4)), synth,
                                    [SimilarityPostprocessor(similarity_cutoff=0.0)])
    if kind == "whole":
        return Shouting(inner=build_app(index, llm))
    if kind == "citation":
        return CitationQueryEngine.from_args(index, llm=llm, similarity_top_k=3)
    if kind == "refine":  # steps, then calls run natively
        return _refine_past_its_steps(index, llm)
    if kind == "subquestion":  # the app as written: sub-questions one after another natively, at once in Teola
        return build_app(index, llm, "subquestion")
    return build_app(index, llm, kind)


@pytest.mark.parametrize("index", ["simple"], indirect=True)  # the spans do not depend on the store
@pytest.mark.parametrize("kind", ["naive", "advanced", "hyde", "tree", "simple", "accumulate", "refine", "subquestion",
                                  "citation", "router", "as-is", "whole"])
def test_span_and_event_handlers_see_the_tree_llama_index_reports(index, llm, questions, kind):
    """The query, retrieval (query fusion: the generated queries and each one's retrieval; HyDE: its
    transform, then the inner engine's query), embedding, rerank, synthesis (tree_summarize: each
    first-level call, then the level above) and LLM spans, nested and named as natively, with the
    same events in each and the instrument tags the query was asked under (sync and async); what
    Teola runs as-is (a user's own retriever or query engine, a postprocessor, refine calls past the
    lowered steps) reports itself in its place, through its async methods in an ``aquery``; LlamaIndex's helper spans aside
    (see spans.py)."""
    query_engine = _app(index, llm, kind)
    fast = optimize(query_engine)
    question = questions[5].question
    trees, callback_trees = {}, {}
    for mode, engine in (("native", query_engine), ("teola", fast)):
        for variant, ask in (("", engine.query), (" async", lambda q: asyncio.run(engine.aquery(q)))):
            with traced(query_engine, {"session": "s-1"}) as (recorder, callbacks):
                ask(question)
            trees[mode + variant] = recorder.tree()
            callback_trees[mode + variant] = callbacks.tree()
            assert recorder.tag_sets() == {(("session", "s-1"),)}, mode + variant  # every span carries the tags
    engine = type(query_engine).__name__
    assert trees["native"][0][1] == f"{engine}.query"
    sync_spans, async_spans = _SPANS_OF[kind]
    assert sync_spans <= {row[1] for row in trees["native"]}
    assert async_spans <= {row[1] for row in trees["native async"]}
    assert trees["teola"] == trees["native"]
    assert trees["teola async"] == trees["native async"]
    assert {"query", "retrieve", "llm"} <= {row[1] for row in callback_trees["native"]}
    assert callback_trees["teola"] == callback_trees["native"]
    assert callback_trees["teola async"] == callback_trees["native async"]


@pytest.mark.answers  # the completion's tokens are the answer's
@pytest.mark.parametrize("index", ["simple"], indirect=True)
def test_a_token_counting_handler_counts_what_it_counts_natively(index, llm, questions):
    """LlamaIndex's TokenCountingHandler (a legacy callback handler) counts the same LLM and embedding
    tokens of a query Teola runs as of the native one."""
    query_engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    fast = optimize(query_engine)
    counts = []
    for engine in (query_engine, fast):
        counter = TokenCountingHandler()
        for manager in callback_managers(query_engine):
            if counter not in manager.handlers:
                manager.add_handler(counter)
        try:
            engine.query(questions[3].question)
        finally:
            for manager in callback_managers(query_engine):
                if counter in manager.handlers:
                    manager.remove_handler(counter)
        counts.append((counter.prompt_llm_token_count, counter.completion_llm_token_count,
                       counter.total_embedding_token_count, len(counter.llm_token_counts)))
    assert counts[0][0] > 0 and counts[0][3] == 1
    assert counts[1] == counts[0]


def test_aquery_matches_query(index, llm, questions):
    query_engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    fast = optimize(query_engine)
    question = questions[4].question
    _assert_same(_warm_native(query_engine, question), asyncio.run(fast.aquery(question)))


def test_postprocessors_run_and_an_emptied_context_answers_like_native(index, llm, questions):
    keep_all = index.as_query_engine(llm=llm, similarity_top_k=3,
                                     node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=0.1)])
    drop_all = index.as_query_engine(llm=llm, similarity_top_k=3,
                                     node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=1.5)])
    question = questions[5].question
    _assert_same(_warm_native(keep_all, question), optimize(keep_all).query(question))
    native_empty = drop_all.query(question)
    assert str(native_empty) == "Empty Response"
    _assert_same(native_empty, optimize(drop_all).query(question))


@pytest.mark.answers
def test_a_context_needing_refine_steps_runs_them_as_steps_and_matches_native(index, llm, questions):
    synth = get_response_synthesizer(llm=llm, response_mode="compact",
                                     prompt_helper=PromptHelper(context_window=1100, num_output=48))
    query_engine = index.as_query_engine(llm=llm, similarity_top_k=3, response_synthesizer=synth)
    fast = optimize(query_engine)
    question = questions[0].question
    native = _warm_native(query_engine, question)
    with record_traces() as traces:
        _assert_same(native, fast.query(question))
    # the packed context did not fit one call: the refine steps after the first ran as primitives too
    assert {"synthesize.step0", "synthesize.step1"} <= {s.node for s in traces[0].spans}


class FailOn(BaseNodePostprocessor):
    """Raises for one query: a component that breaks inside one query only."""

    bad_query: str

    def _postprocess_nodes(self, nodes, query_bundle=None):
        if query_bundle.query_str == self.bad_query:
            raise RuntimeError("this postprocessor refuses the query")
        return nodes


def test_concurrent_queries_get_their_own_answers_and_a_failure_stays_alone(index, llm, questions):
    asked = [q.question for q in questions[:4]]
    query_engine = index.as_query_engine(llm=llm, similarity_top_k=2,
                                         node_postprocessors=[FailOn(bad_query=asked[1])])
    fast = optimize(query_engine)
    expected = {q: [n.node.node_id for n in query_engine.retriever.retrieve(q)] for q in asked}

    async def main():
        return await asyncio.gather(*(fast.aquery(q) for q in asked), return_exceptions=True)

    results = asyncio.run(main())
    assert type(results[1]) is RuntimeError and str(results[1]) == "this postprocessor refuses the query"
    for question, response in zip(asked, results):
        if question != asked[1]:
            assert _ids(response) == expected[question] and str(response).strip()


def test_a_query_too_long_for_the_model_fails_as_natively_and_the_engine_serves_on(index, llm, questions):
    query_engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    fast = optimize(query_engine)
    huge = "Explain the pass statement. " * 2000
    with pytest.raises(Exception) as native:
        query_engine.query(huge)
    with pytest.raises(type(native.value)) as teola:
        fast.query(huge)
    assert str(teola.value) == str(native.value)
    assert str(fast.query(questions[0].question)).strip()


def test_unreadable_objects_get_a_clear_error():
    with pytest.raises(UnsupportedPipelineError, match="takes a llama_index query engine.*got builtins.dict"):
        optimize({"not": "a query engine"})


def test_components_not_on_teola_engines_run_unoptimized_with_one_log_line(index, questions, caplog):
    query_engine = index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=2)
    with caplog.at_level(logging.WARNING, logger="teola"):
        fast = optimize(query_engine)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("teola")]
    assert len(lines) == 1 and "CompactAndRefine runs unoptimized" in lines[0] and "TeolaLLM" in lines[0]
    assert fast.fallbacks == [lines[0].removeprefix("teola: ")]
    question = questions[2].question
    _assert_same(query_engine.query(question), fast.query(question))


@pytest.mark.answers
def test_metadata_filters_are_lowered_and_retrieve_what_native_retrieves(simple_index, llm, questions):
    """A retriever whose metadata filters (two topics here) narrow its search: Teola searches the
    subset they let through, so the same nodes come back, all of those topics."""
    topics = MetadataFilters(filters=[MetadataFilter(key="topic", value="for"), MetadataFilter(key="topic", value="try")],
                             condition="or")
    query_engine = simple_index.as_query_engine(llm=llm, similarity_top_k=3, filters=topics)
    fast = optimize(query_engine)
    assert fast.fallbacks == [] and "retrieve.search" in {n.name for n in fast.plan}
    for question in (questions[2].question, questions[6].question):
        native = _warm_native(query_engine, question)
        assert {n.node.metadata["topic"] for n in native.source_nodes} <= {"for", "try"}
        _assert_same(native, fast.query(question))


@pytest.mark.answers
def test_advanced_rag_with_every_pass_matches_native(simple_index, llm, questions):
    query_engine = build_app(simple_index, llm, "advanced")
    fast = optimize(query_engine)
    assert fast.fallbacks == []
    plan_ops = {n.name: n for n in fast.plan}
    assert plan_ops["expand.decode"].meta.stream and "synthesize.step0.prefill_prefix" in plan_ops
    unoptimized = optimize(query_engine, passes=())
    for question in questions[:2]:
        native = _warm_native(query_engine, question.question)
        assert native.response != "Empty Response" and len(native.source_nodes) == 3
        with record_traces() as traces:
            _assert_same(native, fast.query(question.question))
        _assert_same(native, unoptimized.query(question.question))
        spans = {s.node: s for s in traces[0].spans}
        # the original query was retrieved while the LLM was still writing the other queries,
        # and the two rerank calls LlamaIndex makes one after the other ran together
        assert spans["retrieve0.search"].end < spans["expand.decode"].end
        assert spans["postprocess0.batch1"].start < spans["postprocess0.batch0"].end


@pytest.mark.answers
def test_the_search_app_answers_as_native_and_prefills_while_the_search_api_answers(llm, corpus, questions, caplog):
    with SearchService(corpus, latency_s=0.2) as service:
        query_engine = build_app(None, llm, "search", search_url=service.url)
        with caplog.at_level(logging.WARNING, logger="teola"):
            fast = optimize(query_engine)
        assert [r.getMessage() for r in caplog.records if r.name.startswith("teola")] == [f"teola: {fast.fallbacks[0]}"]
        assert fast.fallbacks[0].startswith("WebSearchRetriever runs unoptimized, as one call")
        native = _warm_native(query_engine, questions[0].question)
        with record_traces() as traces:
            _assert_same(native, fast.query(questions[0].question))
    assert [n.node.node_id for n in native.source_nodes] == [h.id for h in service.results(questions[0].question, 3)]
    spans = {s.node: s for s in traces[0].spans}
    assert spans["synthesize.step0.prefill_prefix"].end < spans["retrieve"].end


@pytest.mark.answers
def test_refine_runs_its_steps_as_primitives_prefilling_each_while_the_one_before_decodes(simple_index, llm, questions):
    query_engine = build_app(simple_index, llm, "refine")
    fast = optimize(query_engine)
    assert fast.fallbacks == []
    question = questions[3].question
    native = _warm_native(query_engine, question)
    with record_traces() as traces:
        _assert_same(native, fast.query(question))
    spans = {s.node: s for s in traces[0].spans}
    assert {"synthesize.step0", "synthesize.step1", "synthesize.step2"} <= set(spans)  # one step per node
    # each later step's prompt up to the answer so far (its chunk, the query) was in the engine before that answer
    assert spans["synthesize.step2.prefill_prefix"].end < spans["synthesize.step0"].end
    assert asyncio.run(fast.aquery(question)).response == native.response


def _refine_past_its_steps(index, llm):
    """Refine over 2 nodes, each split in pieces (of at most 120 tokens): the steps lowered are the
    retriever's top-k (2), the loop's calls after them run natively."""
    synth = get_response_synthesizer(llm=llm, response_mode="refine",
                                     prompt_helper=PromptHelper(num_output=48, chunk_size_limit=120))
    return index.as_query_engine(llm=llm, similarity_top_k=2, response_synthesizer=synth)


@pytest.mark.answers
def test_refine_calls_past_the_lowered_steps_run_natively_and_match(simple_index, llm, questions):
    query_engine = _refine_past_its_steps(simple_index, llm)
    fast = optimize(query_engine)
    question = questions[2].question
    native = _warm_native(query_engine, question)
    with record_traces() as traces:
        _assert_same(native, fast.query(question))
    pieces = refine_pieces(query_engine._response_synthesizer, question, native.source_nodes)
    assert len(pieces) > 2 and "synthesize.step1" in {s.node for s in traces[0].spans}
    assert asyncio.run(fast.aquery(question)).response == native.response


@pytest.mark.answers
def test_hyde_is_lowered_and_matches_native(simple_index, llm, questions):
    query_engine = TransformQueryEngine(build_app(simple_index, llm), query_transform=HyDEQueryTransform(llm=llm))
    fast = optimize(query_engine)
    assert fast.fallbacks == []
    assert {"hyde.generate", "retrieve.aggregate", "synthesize.step0"} <= {n.name for n in fast.plan}
    for question in questions[6:8]:
        _assert_same(_warm_native(query_engine, question.question), fast.query(question.question))


@pytest.mark.answers
def test_tree_summarize_sends_its_first_level_together_and_matches_native(simple_index, llm, questions):
    def tree_app(use_async):
        synth = get_response_synthesizer(llm=llm, response_mode="tree_summarize", use_async=use_async,
                                         prompt_helper=PromptHelper(context_window=600, num_output=48))
        return simple_index.as_query_engine(llm=llm, similarity_top_k=5, response_synthesizer=synth)

    fast = optimize(tree_app(use_async=False))
    assert fast.fallbacks == []
    question = questions[1].question
    # vLLM on CPU is not batch-invariant: LLM calls decoded together can pick another token at a
    # near-tie than the same calls one by one. Teola sends the first level together, as LlamaIndex's
    # own use_async=True does, so that is the native run it must match.
    native = _warm_native(tree_app(use_async=True), question)
    with record_traces() as traces:
        _assert_same(native, fast.query(question))
    prompts = fast.plan["synthesize.prompt"].args.build(question, native.source_nodes)
    assert len(prompts) >= 2  # several chunks: summarized together, then by the native recursion
    assert "synthesize.decode" in {s.node for s in traces[0].spans}


@pytest.mark.answers
@pytest.mark.parametrize("kind", ["simple", "accumulate"])
def test_simple_summarize_and_accumulate_are_lowered_and_match_native(simple_index, llm, questions, kind):
    fast = optimize(build_app(simple_index, llm, kind))
    assert fast.fallbacks == []
    question = questions[4].question
    # accumulate's calls go out together, as LlamaIndex's own use_async=True sends them: the native
    # run to match (vLLM on CPU is not batch-invariant, see the tree_summarize test)
    native = _warm_native(build_app(simple_index, llm, kind, hand_tuned=kind == "accumulate"), question)
    with record_traces() as traces:
        _assert_same(native, fast.query(question))
    assert "synthesize.decode" in {s.node for s in traces[0].spans}
    if kind == "accumulate":
        assert str(native).startswith("Response 1: ") and "Response 3: " in str(native)  # one call per node
    assert asyncio.run(fast.aquery(question)).response == native.response


def _texts(response):
    return [n.node.get_content() for n in response.source_nodes]


@pytest.mark.answers
def test_sub_questions_are_answered_side_by_side_and_the_answer_matches_native(simple_index, llm, questions):
    """The sub-question engine as LlamaIndex's guide builds it (its question generator held to
    LlamaIndex's own JSON schema by guided decoding): Teola answers the sub-questions at once, as
    ``use_async=True`` does, so that is the native run to match (vLLM on CPU is not batch-invariant);
    each sub-question's tool runs as primitives (its retrieval and LLM calls), the other tools not at all."""
    fast = optimize(build_app(simple_index, llm, "subquestion"))
    assert fast.fallbacks == []
    assert {"generate.predict", "questions", "sub0/tool0/retrieve.search", "sub0/tool1/synthesize.step0", "sub0.pair", "rest",
            "synthesize"} <= {n.name for n in fast.plan}
    question = questions[1].question
    native = _warm_native(build_app(simple_index, llm, "subquestion", hand_tuned=True), question)
    with LlamaIndexRecorder() as recorder, record_traces() as traces:
        response = fast.query(question)
    assert str(response) == str(native) and _texts(response) == _texts(native)
    searched = sorted(s.node.rsplit("/", 1)[0] for s in traces[0].spans if s.node.endswith("/retrieve.search"))
    answered = [text for text in _texts(native) if text.startswith("Sub question: ")]
    assert len(searched) == len(answered) and len({tool.split("/")[0] for tool in searched}) == len(searched)  # one tool each
    assert native.source_nodes[0].node.get_content().startswith("Sub question: ")
    subqueries = [(name, span) for name, span in recorder.events
                  if name in ("QueryStartEvent", "QueryEndEvent") and span.startswith("RetrieverQueryEngine.query")]
    assert len(subqueries) >= 4, "the generator wrote one sub-question only"
    assert [name for name, _ in subqueries[:2]] == ["QueryStartEvent"] * 2  # the second began before the first ended
    asked = asyncio.run(fast.aquery(question))
    assert str(asked) == str(native) and _texts(asked) == _texts(native)


@pytest.mark.answers
def test_a_citation_query_engine_is_lowered_and_cites_what_native_cites(simple_index, llm, questions):
    """CitationQueryEngine: retrieval as primitives, its numbered "Source N:" chunks made by the
    engine itself, then the refine steps over them; the same answer and the same cited chunks (a
    chunk is a new node with a new id in every run, native too: compared by text)."""
    query_engine = CitationQueryEngine.from_args(simple_index, llm=llm, similarity_top_k=3)
    fast = optimize(query_engine)
    assert fast.fallbacks == [] and {"retrieve.search", "cite", "synthesize.step0"} <= {n.name for n in fast.plan}
    question = questions[1].question
    native = _warm_native(query_engine, question)
    assert [t.split("\n")[0] for t in _texts(native)] == ["Source 1:", "Source 2:", "Source 3:"]
    response = fast.query(question)
    assert str(response) == str(native) and _texts(response) == _texts(native)
    asked = asyncio.run(fast.aquery(question))
    assert str(asked) == str(native) and _texts(asked) == _texts(native)


def _routers(index, llm, selector):
    """The router app (its LLM selector chooses the first candidate for these questions), and one whose
    own selector chooses the second (a tree_summarize engine over twice the nodes)."""
    candidates = (index.as_query_engine(llm=llm, similarity_top_k=3),
                  index.as_query_engine(llm=llm, similarity_top_k=6, response_mode="tree_summarize"))
    tools = [QueryEngineTool.from_defaults(engine, name=name, description=description)
             for engine, (name, description) in zip(candidates, ROUTER_TOOLS)]
    return build_app(index, llm, "router"), RouterQueryEngine(selector, tools, llm=llm)


@pytest.mark.answers
def test_a_router_runs_only_the_engine_chosen_as_primitives_and_answers_as_native(simple_index, llm, questions,
                                                                                  chosen_by_hand):
    """RouterQueryEngine as LlamaIndex's router guide builds it (its LLM selector held to its parser's
    JSON by guided decoding, its call lowered), and with a user's own selector (run as a call): the
    chosen engine's retrieval and LLM calls run as primitives, the other engine not at all; the same
    answer, sources and selector result as native."""
    question = questions[1].question
    own_selector = ("ChosenByHand runs unoptimized, as one call: Teola lowers LLMSingleSelector and LLMMultiSelector "
                    "(a Pydantic selector calls tools) so far")
    for router, chosen, fallbacks in zip(_routers(simple_index, llm, chosen_by_hand(1)), (0, 1), ([], [own_selector])):
        fast = optimize(router)
        assert fast.fallbacks == fallbacks
        native = _warm_native(router, question)
        assert native.metadata["selector_result"].ind == chosen
        with record_traces() as traces:
            _assert_same(native, fast.query(question))
        ran = {s.node for s in traces[0].spans}
        assert {f"route{chosen}/retrieve.search", "routed"} <= ran
        assert not any(node.startswith(f"route{1 - chosen}/") for node in ran)
        assert ("select.predict" in ran) == (not fallbacks)  # the LLM selector's call, lowered
        _assert_same(native, asyncio.run(fast.aquery(question)))


class Shouting(CustomQueryEngine):
    """A user's own query engine: Teola cannot see into it."""

    inner: BaseQueryEngine

    def custom_query(self, query_str: str):
        return str(self.inner.query(query_str)).upper()


def test_a_query_engine_teola_cannot_read_runs_whole_as_one_call(simple_index, llm, questions, caplog):
    query_engine = Shouting(inner=build_app(simple_index, llm))
    with caplog.at_level(logging.WARNING, logger="teola"):
        fast = optimize(query_engine)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("teola")] == [f"teola: {fast.fallbacks[0]}"]
    assert fast.fallbacks[0].startswith("Shouting runs unoptimized")
    question = questions[8].question
    query_engine.query(question)
    assert str(fast.query(question)) == str(query_engine.query(question))
