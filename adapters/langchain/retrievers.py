"""The retriever families: a similarity retriever over a vector store on Teola's engines, alone or
``.map()``-ed over a list of queries (embed -> search -> the store's documents), and an ensemble of
retrievers (langchain-classic's ``EnsembleRetriever``): each of its retrievers traced as any step,
side by side, then its own weighted reciprocal rank fusion."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.vectorstores import VectorStoreRetriever

from langchain_core.documents import Document

from teola.adapters.langchain.compat import EnsembleRetriever, RunnableEach
from teola.adapters.langchain.models import bind_embeddings, bind_store_search, store_documents, store_why_not
from teola.adapters.langchain.runs import EachRun, EnsembleRun, RetrieverRun, region_values
from teola.adapters.langchain.steps import ChildTag, StepRecogniser, Traced, Value
from teola.optimizer.ir import ModuleKind, Node, Ref, Region
from teola.optimizer.ops import FnArgs, RetrieveArgs

if TYPE_CHECKING:
    from teola.adapters.langchain.tracer import Tracer


class RetrieverRecogniser(StepRecogniser):
    """``store.as_retriever()`` (or its ``.map()``) over a store Teola's engines serve: a
    TeolaVectorStore, or LangChain's InMemoryVectorStore with any embeddings (``models``)."""

    family = "a vector store retriever"

    def accepts(self, step: Any) -> bool:
        return isinstance(_retriever(step), VectorStoreRetriever)

    def why_not(self, step: Any) -> str | None:
        retriever = _retriever(step)
        if retriever.search_type != "similarity" or not set(retriever.search_kwargs) <= {"k"}:
            return f"search type {retriever.search_type!r} with {sorted(retriever.search_kwargs)} (Teola runs similarity top k)"
        return store_why_not(retriever.vectorstore)

    def takes(self, value: Traced) -> bool:
        return isinstance(value, Value)  # a dict flowing into a retriever fails natively, so it runs natively

    def read(self, tracer: "Tracer", step: Any, value: Traced, tag: ChildTag) -> Value:
        retriever = _retriever(step)
        name = tracer.name("retrieve")
        store = retriever.vectorstore
        embed, search = bind_embeddings(store.embeddings), bind_store_search(store)
        tracer.needs(embed.spec)
        tracer.needs(search.spec)
        tracer.graph.add(Node(name, ModuleKind.RETRIEVE, {"query": tracer.materialize(value).source}, ("output",),
                              RetrieveArgs(embed.engine, search.engine, retriever.search_kwargs.get("k", 4),
                                           lambda hits, query: store_documents(store, hits),
                                           batch=isinstance(step, RunnableEach))))
        tracer.lowered.append(f"{name}: {type(retriever).__name__} over {type(store).__name__}")
        run = tracer.region_name()
        observer = (EachRun(step, tag, run, RetrieverRun(retriever, None, run)) if isinstance(step, RunnableEach)
                    else RetrieverRun(retriever, tag, run))
        tracer.add_region(Region(run, region_values(value)[0], {"value": Ref(name, "output")}, observer, tracer.region))
        return Value(Ref(name, "output"))


def _retriever(step: Any) -> Any:
    """The retriever a step is: itself, or the one a ``.map()`` runs on each item."""
    return step.bound if isinstance(step, RunnableEach) else step


RETRIEVER = RetrieverRecogniser()


class EnsembleRecogniser(StepRecogniser):
    """langchain-classic's ``EnsembleRetriever``: its retrievers (tagged ``retriever_N`` under its
    run, as it runs them) side by side, each lowered where it can be, then its fusion, a pure call."""

    family = "an ensemble of retrievers"

    def accepts(self, step: Any) -> bool:
        return EnsembleRetriever is not None and isinstance(step, EnsembleRetriever)

    def why_not(self, step: Any) -> str | None:
        return None

    def takes(self, value: Traced) -> bool:
        return isinstance(value, Value)

    def read(self, tracer: "Tracer", step: Any, value: Traced, tag: ChildTag) -> Value:
        def make(run: str, parent: str | None) -> tuple[Region, Value]:
            lists = [tracer.materialize(tracer.trace(retriever, value, f"retriever_{i + 1}"))
                     for i, retriever in enumerate(step.retrievers)]
            name = tracer.name("fuse")
            tracer.graph.add(Node(name, ModuleKind.CALL, {f"docs{i}": docs.source for i, docs in enumerate(lists)},
                                  ("output",), FnArgs(_fusion(step), "EnsembleRetriever fusion", pure=True)))
            output = Value(Ref(name, "output"))
            return Region(run, region_values(value)[0], {"value": output.source}, EnsembleRun(step, tag, run), parent), output

        return tracer.run_region(make)


def _fusion(ensemble: Any):
    """The retrievers' lists -> the ensemble's fused list, as its ``rank_fusion`` makes it."""

    def fuse(**lists: list) -> list[Document]:
        docs = [[Document(page_content=d) if isinstance(d, str) else d for d in lists[f"docs{i}"]]
                for i in range(len(lists))]
        return ensemble.weighted_reciprocal_rank(docs)

    return fuse


ENSEMBLE = EnsembleRecogniser()
