"""Reading a RouterQueryEngine (pure graph logic: the candidates' reading, their gates, the selector's call)."""

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.base_selector import SelectorResult, SingleSelection
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.schema import TextNode
from llama_index.core.selectors import LLMSingleSelector
from llama_index.core.tools import QueryEngineTool

from teola.adapters.llama_index import compat as li
from teola.adapters.llama_index import read_query_engine
from teola.adapters.llama_index.router import _chosen
from teola.optimizer.ir import ModuleKind, QueryInput, Ref
from teola.optimizer.lowering import lower


def _router(llm, selector=None) -> RouterQueryEngine:
    index = VectorStoreIndex([TextNode(text="a"), TextNode(text="b")], embed_model=MockEmbedding(embed_dim=8))
    tools = [QueryEngineTool.from_defaults(index.as_query_engine(llm=llm), name="facts", description="facts"),
             QueryEngineTool.from_defaults(index.as_query_engine(llm=llm, response_mode="tree_summarize"),
                                           name="overview", description="overviews")]
    return RouterQueryEngine(selector or LLMSingleSelector.from_defaults(llm=llm), tools, llm=llm)


def test_every_candidate_is_read_under_its_prefix_behind_a_gate_and_an_llm_selector_is_lowered(served_llm):
    reading = read_query_engine(_router(served_llm))
    graph = reading.graph
    assert reading.fallbacks == [] and not reading.whole
    assert graph["select.predict"].op is ModuleKind.GENERATE and graph["select"].inputs == {"text": Ref("select.predict", "text")}
    for i in (0, 1):
        assert graph[f"route{i}"].inputs == {"query": QueryInput("query_str"), "chosen": Ref("route", "chosen")}
        assert graph[f"route{i}/retrieve"].inputs["query"] == Ref(f"route{i}", "query")
    assert graph["route0/synthesize"].op is ModuleKind.CALL  # compact: the refine loop's finish
    assert graph["route1/synthesize"].op is ModuleKind.SYNTHESIZE  # tree_summarize
    routed = graph["routed"]
    assert routed.args.runs_on_skipped == ("response0", "response1")
    assert routed.inputs["response1"] == Ref("route1/synthesize", "response")
    spans = {r.name: r for r in graph.regions.values()}
    router_span = graph["routed"].region
    candidate_spans = [r for r in spans.values() if r.parent == router_span and "query" in r.inputs
                       and r.inputs["query"] in (Ref("route0", "query"), Ref("route1", "query"))]
    assert len(candidate_spans) == 2  # each candidate's query span, under the router's, starting on its gate
    assert len(reading.indexes) == 1  # both candidates search the one index
    lower(graph).lint()


def test_a_selector_teola_cannot_lower_runs_as_one_call_and_candidates_on_foreign_llms_run_whole(chosen_by_hand, served_llm):
    reading = read_query_engine(_router(served_llm, selector=chosen_by_hand(1)))
    assert reading.graph["select"].op is ModuleKind.CALL and "select.predict" not in reading.graph
    assert reading.fallbacks == ["ChosenByHand runs unoptimized, as one call: Teola lowers LLMSingleSelector and "
                                 "LLMMultiSelector (a Pydantic selector calls tools) so far"]
    reading = read_query_engine(_router(MockLLM()))
    assert any(f.startswith("LLMSingleSelector runs unoptimized, as one call: its LLM MockLLM") for f in reading.fallbacks)
    assert reading.graph["route0/synthesize"].op is ModuleKind.CALL


def test_the_choice_is_read_as_the_router_reads_it():
    parts = li.router_parts(_router(MockLLM()))
    one = lambda i: SelectorResult(selections=[SingleSelection(index=i, reason="r")])  # noqa: E731
    assert _chosen(parts, one(1)) == (1,)
    assert _chosen(parts, one(-1)) == (1,)  # a choice of 0 (index -1) picks the last, as natively
    assert _chosen(parts, SelectorResult(selections=[SingleSelection(index=1, reason="r"),
                                                     SingleSelection(index=0, reason="s")])) == (1, 0)
    with pytest.raises(ValueError, match="Failed to select query engine"):
        _chosen(parts, SelectorResult(selections=[]))
    with pytest.raises(IndexError):
        _chosen(parts, one(2))
