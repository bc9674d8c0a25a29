"""Every private LlamaIndex name Teola reads exists in the installed llama-index-core (real components)."""

import faiss
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.indices.query.query_transform import HyDEQueryTransform
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor import LLMRerank
from llama_index.core.query_engine import (CitationQueryEngine, RouterQueryEngine, SubQuestionQueryEngine,
                                           TransformQueryEngine)
from llama_index.core.question_gen import LLMQuestionGenerator
from llama_index.core.tools import QueryEngineTool
from llama_index.core.response_synthesizers import Accumulate, CompactAndRefine, SimpleSummarize, TreeSummarize
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.core.schema import TextNode
from llama_index.core.selectors import LLMMultiSelector, LLMSingleSelector
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.llms.openai_like import OpenAILike
from llama_index.vector_stores.faiss import FaissVectorStore

from teola.adapters.llama_index import compat as li
from teola.runtime.models import resolve_embedding


def _components() -> list:
    llm, embed = MockLLM(), MockEmbedding(embed_dim=8)
    index = VectorStoreIndex([TextNode(text="a"), TextNode(text="b")], embed_model=embed)
    retriever = index.as_retriever()
    engine = index.as_query_engine(llm=llm)
    return [
        engine, TransformQueryEngine(engine, HyDEQueryTransform(llm=llm)), HyDEQueryTransform(llm=llm), retriever,
        QueryFusionRetriever([retriever], llm=llm), LLMRerank(llm=llm), CompactAndRefine(llm=llm), TreeSummarize(llm=llm),
        SimpleSummarize(llm=llm), Accumulate(llm=llm),
        SubQuestionQueryEngine.from_defaults([QueryEngineTool.from_defaults(engine, name="docs", description="the docs")],
                                             question_gen=LLMQuestionGenerator.from_defaults(llm=llm), llm=llm),
        CitationQueryEngine.from_args(index, llm=llm),
        RouterQueryEngine(LLMSingleSelector.from_defaults(llm=llm),
                          [QueryEngineTool.from_defaults(engine, name="docs", description="the docs")], llm=llm),
        LLMSingleSelector.from_defaults(llm=llm), LLMMultiSelector.from_defaults(llm=llm),
        LLMQuestionGenerator.from_defaults(llm=llm),
        index.as_chat_engine(chat_mode="condense_plus_context", llm=llm),
        index.as_chat_engine(chat_mode="context", llm=llm),
        index.as_chat_engine(chat_mode="condense_question", llm=llm),
        index.as_chat_engine(chat_mode="simple", llm=llm),
        llm, FaissVectorStore(faiss_index=faiss.IndexFlatL2(8)),
        OpenAILike(model="m", api_base="http://127.0.0.1:9/v1", api_key="k"),  # nothing is sent until it is called
        HuggingFaceEmbedding(model_name=resolve_embedding()),
    ]


def test_no_private_name_the_adapter_reads_has_moved():
    components = _components()
    covered = {kind for kind in li.PRIVATE_NAMES for c in components if kind in [k.__name__ for k in type(c).__mro__]}
    assert covered == set(li.PRIVATE_NAMES)  # one real component of every class whose privates are read
    assert li.moved_names(components) == []
    assert li.moved_functions() == []


def test_a_moved_name_is_named_with_its_class():
    renamed = type("LLMRerank", (), {"_get_predict_kwargs": None, "_get_node_batches": None})()
    assert li.moved_names([renamed]) == ["LLMRerank._parse_raw_response"]


def test_run_jobs_still_opens_a_worker_span_per_job():
    name, parameters = li.run_jobs_worker()
    assert name == "run_jobs.<locals>.worker" and parameters == ("job",)
