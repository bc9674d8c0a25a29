"""langchain-classic's EnsembleRetriever over LangChain's own InMemoryVectorStore (each retriever
on engines around the user's objects; LangChain's deterministic fake embedding, so no model is
needed): the fused documents and the run tree of native, sync and async."""

import asyncio

import pytest
from langchain_classic.retrievers import EnsembleRetriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.context import collect_runs
from langchain_core.vectorstores import InMemoryVectorStore

from teola.adapters.langchain import read_runnable
from teola.optimizer.ir import ModuleKind
from teola_integrations.langchain import optimize
from teola_integrations.tools.run_trees import langchain_run_metadata, langchain_run_tree

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


class KeywordRetriever(BaseRetriever):
    """A retriever of the user's own (not a vector store's): documents that share a word with the query."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [doc for doc in self.docs if set(doc.page_content.split()) & set(query.split())]


@pytest.fixture(scope="module")
def ensemble():
    docs = [Document(id=f"d{i}", page_content=f"{a} {b}") for i, (a, b) in enumerate(zip(WORDS, WORDS[2:] + WORDS[:2]))]
    dense = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    dense.add_documents(docs)
    other = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    other.add_documents(docs)
    return EnsembleRetriever(retrievers=[dense.as_retriever(search_kwargs={"k": 3}), other.as_retriever(search_kwargs={"k": 2}),
                                         KeywordRetriever(docs=docs)], weights=[0.5, 0.3, 0.2], tags=["mine"])


def test_the_vector_retrievers_of_an_ensemble_are_lowered_side_by_side(ensemble):
    reading = read_runnable(RunnableLambda(lambda q: q) | ensemble)
    retrieves = [n for n in reading.graph if n.op is ModuleKind.RETRIEVE]
    assert len(retrieves) == 2 and len(reading.lowered) == 2
    assert "KeywordRetriever" in [n.args.label for n in reading.graph if n.op is ModuleKind.CALL]  # the user's own retriever runs as-is


@pytest.mark.parametrize("query", ["alpha zeta", "theta"])
def test_an_ensemble_fuses_and_reports_its_runs_as_natively(ensemble, query):
    chain = RunnableLambda(lambda q: q) | ensemble | RunnableLambda(lambda docs: [d.id for d in docs])
    fast = optimize(chain)
    seen = []
    for invoke in (chain.invoke, fast.invoke, lambda q: asyncio.run(fast.ainvoke(q))):
        with collect_runs() as collector:
            ids = invoke(query)
        [root] = collector.traced_runs
        seen.append((ids, langchain_run_tree(root), langchain_run_metadata(root)))
    assert seen[1] == seen[0] and seen[2] == seen[0]
    assert {row[3] for row in seen[0][1] if row[1] == "EnsembleRetriever"} == {("mine", "seq:step:2")}
    assert sum(row[3][-1].startswith("retriever_") for row in seen[0][1] if row[3]) == 3
