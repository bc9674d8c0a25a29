"""Reading LlamaIndex objects into module graphs (pure graph logic: framework mocks are enough here)."""

import asyncio

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

from teola.adapters.llama_index import UnsupportedPipelineError, read_query_engine, to_prompt
from teola.optimizer.ir import ModuleKind, Ref
from teola.optimizer.values import ChatMessage as TeolaMessage


def test_to_prompt_keeps_roles_and_contents_and_rejects_other_roles():
    prompt = to_prompt([ChatMessage(role=MessageRole.SYSTEM, content="be brief"),
                        ChatMessage(role=MessageRole.USER, content="hi"), ChatMessage(role=MessageRole.ASSISTANT)])
    assert prompt.messages == (TeolaMessage("system", "be brief"), TeolaMessage("user", "hi"),
                               TeolaMessage("assistant", ""))
    with pytest.raises(ValueError, match="got role 'tool'"):
        to_prompt([ChatMessage(role=MessageRole.TOOL, content="x")])


def test_foreign_components_become_call_modules_with_the_reason_recorded():
    index = VectorStoreIndex([TextNode(text="a"), TextNode(text="b")], embed_model=MockEmbedding(embed_dim=8))
    query_engine = index.as_query_engine(llm=MockLLM(), node_postprocessors=[SimilarityPostprocessor()],
                                         filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="x")]))
    reading = read_query_engine(query_engine)
    graph = reading.graph
    assert [(n.name, n.op) for n in graph.topological_order()] == [
        ("retrieve", ModuleKind.CALL), ("postprocess0", ModuleKind.POSTPROCESS), ("synthesize", ModuleKind.CALL)]
    assert graph["synthesize"].inputs["nodes"] == Ref("postprocess0", "nodes")
    assert len(reading.fallbacks) == 2
    assert "metadata filters" in reading.fallbacks[0]
    assert "its LLM MockLLM is not one Teola serves (use teola_integrations.llama_index.TeolaLLM" in reading.fallbacks[1]
    assert reading.indexes == [] and reading.engines == []


def test_metadata_filters_on_the_default_store_lower_to_the_subset_they_let_through():
    """The subset a filtered query searches, read with LlamaIndex's own filter function (an OR of two
    conditions here); filters that let nothing through leave the retriever to run as it is."""
    nodes = [TextNode(id_=f"n{i}", text=f"text {i}", metadata={"topic": topic, "year": 2020 + i})
             for i, topic in enumerate(["try", "for", "try", "types"])]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    either = MetadataFilters(filters=[MetadataFilter(key="topic", value="for"),
                                      MetadataFilter(key="year", value=2023, operator=">=")], condition="or")
    reading = read_query_engine(index.as_query_engine(llm=MockLLM(), filters=either))
    assert reading.graph["retrieve"].op is ModuleKind.RETRIEVE
    [source] = reading.indexes
    assert source.ids == ("n1", "n3") and len(source.vectors) == 2
    unfiltered = read_query_engine(index.as_query_engine(llm=MockLLM())).indexes[0]
    assert unfiltered.ids == ("n0", "n1", "n2", "n3") and unfiltered.key != source.key  # an engine per subset
    nothing = MetadataFilters(filters=[MetadataFilter(key="topic", value="import")])
    reading = read_query_engine(index.as_query_engine(llm=MockLLM(), filters=nothing))
    assert reading.graph["retrieve"].op is ModuleKind.CALL and "let no node through" in reading.fallbacks[0]


def test_the_apps_own_embedding_model_becomes_an_engine_it_starts():
    embed = MockEmbedding(embed_dim=8)
    index = VectorStoreIndex([TextNode(text="a"), TextNode(text="b")], embed_model=embed)
    reading = read_query_engine(index.as_query_engine(llm=MockLLM()))
    retrieve = reading.graph["retrieve"]
    assert retrieve.op is ModuleKind.RETRIEVE
    [spec] = reading.engines
    assert spec.in_process and spec.id == retrieve.args.embed and spec.id.name.startswith("embedding:llama_index:MockEmbedding:")
    engine = spec.build()
    assert asyncio.run(engine.run_batch(["a question"])) == [embed.get_query_embedding("a question")]


def test_objects_that_are_not_retriever_query_engines_are_refused_by_name():
    index = VectorStoreIndex([TextNode(text="a")], embed_model=MockEmbedding(embed_dim=8))
    with pytest.raises(UnsupportedPipelineError, match="got llama_index.core.indices.vector_store.retrievers"):
        read_query_engine(index.as_retriever())
