"""The LangChain demo apps, written the way LangChain's own tutorials write them, on Teola-backed engines.

Each app comes in the form users write (``native``) and, where the chain allows it, LangChain's best
hand-tuned form (``hand_tuned``: independent steps put side by side in a ``RunnableParallel``), the
strongest native baseline. Every app takes ``{"question": ...}`` and returns a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Literal

from langchain_core.documents import Document
from langchain_core.output_parsers import NumberedListOutputParser, StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableBranch, RunnableLambda, RunnableParallel, RunnablePassthrough

from teola_integrations.tools.data import load_corpus
from teola_integrations.langchain.engines import TeolaChatModel, TeolaEmbeddings, TeolaVectorStore
from teola_integrations.tools.search_service import web_search

AppName = Literal["search", "rag", "fusion", "contextual", "branches", "route", "route_fn", "stuff", "fallback",
                  "retry", "ensemble"]
# The paper's apps and branches: what the bench runs by default.
PAPER_APPS: tuple[AppName, ...] = ("search", "rag", "fusion", "contextual", "branches")
APPS: tuple[AppName, ...] = (*PAPER_APPS, "route", "route_fn", "stuff", "fallback", "retry", "ensemble")

SYSTEM = "You are a concise assistant for questions about Python. Answer in at most three sentences."
# Question first: the part of the prompt known before retrieval ends is the longest it can be.
RAG_PROMPT = ChatPromptTemplate.from_messages([
    ("system", SYSTEM),
    ("human", "Question: {question}\n\nUse this context to answer it:\n{context}\n\nAnswer:"),
])
QUERIES = 3
TOO_MANY_CHUNKS = 40  # the fallback app's retrieval: more text than the model's 2048-token context holds
QUERIES_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You write search queries. Reply with a numbered list only, like:\n1. first query\n2. second query\n"
               "3. third query"),
    ("human", f"Write {QUERIES} different search queries about: {{question}}"),
])
ANSWER_PROMPT = ChatPromptTemplate.from_messages([("system", SYSTEM), ("human", "{question}")])
FACTS_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You list facts. Output three short facts, one per line."),
    ("human", "Key facts needed to answer: {question}"),
])
CONTEXT_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You situate a passage for a search. In one sentence, say what the passage tells about the question."),
    ("human", "Question: {question}\n\nPassage:\n{chunk}"),
])
ROUTE_PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Classify the question. Reply with one word: `statement` if it asks about a Python statement, else "
               "`other`."),
    ("human", "{question}"),
])
# LangChain's standard chains' prompt shape: the documents in the system message, the input as the human's.
STUFF_PROMPT = ChatPromptTemplate.from_messages([
    ("system", f"{SYSTEM}\n\nUse this context to answer:\n{{context}}"),
    ("human", "{input}"),
])
JOIN_PROMPT = ChatPromptTemplate.from_messages([
    ("system", SYSTEM),
    ("human", "Question: {question}\n\nDraft answer: {answer}\n\nFacts:\n{facts}\n\nWrite the final answer:"),
])


def format_docs(docs: list[Document]) -> str:
    """Retrieved documents as the prompt's context, one paragraph each."""
    return "\n\n".join(doc.page_content for doc in docs)


def reciprocal_rank_fusion(results: list[list[Document]], k: int = 60, top_n: int = 4) -> list[Document]:
    """Fuse ranked lists of documents by reciprocal rank (RAG-fusion), best first."""
    scores: dict[str, float] = {}
    documents: dict[str, Document] = {}
    for docs in results:
        for rank, doc in enumerate(docs):
            scores[doc.id] = scores.get(doc.id, 0.0) + 1.0 / (rank + k)
            documents.setdefault(doc.id, doc)
    best = sorted(scores, key=lambda i: scores[i], reverse=True)[:top_n]
    return [documents[i] for i in best]


def search_documents(url: str, k: int) -> RunnableLambda:
    """A step that asks the web-search API at ``url`` for ``k`` hits of a query, as documents."""

    def search(query: str) -> list[Document]:
        return [Document(id=hit.id, page_content=hit.snippet, metadata={"title": hit.title, "score": hit.score})
                for hit in web_search(url, query, k)]

    return RunnableLambda(search, name="web_search")


def passages(inputs: dict) -> list[dict[str, str]]:
    """One ``{question, chunk}`` per retrieved document: what contextualization reads."""
    return [{"question": inputs["question"], "chunk": doc.page_content} for doc in inputs["docs"]]


def join_contexts(contexts: list[str]) -> str:
    """Contextualized passages as the answer prompt's context, one paragraph each."""
    return "\n\n".join(contexts)


def rag_answer(retriever: Runnable, answer: Runnable) -> Runnable:
    """The tutorial's RAG chain on ``{"question": ...}``: the question's top-k, formatted, then ``answer``."""
    return {"context": itemgetter("question") | retriever | format_docs, "question": itemgetter("question")} | answer


def standard_retrieval_chain(retriever: Runnable, model: Runnable) -> Runnable:
    """``create_retrieval_chain(retriever, create_stuff_documents_chain(model, STUFF_PROMPT))``:
    LangChain's standard RAG chain, on ``{"input": ...}`` (needs langchain-classic, which the
    ``clients`` extra brings)."""
    try:
        from langchain_classic.chains import create_retrieval_chain
        from langchain_classic.chains.combine_documents import create_stuff_documents_chain
    except ImportError as exc:
        raise ImportError("the stuff app builds LangChain's standard chains from langchain-classic: "
                          "pip install langchain-classic (or teola[clients])") from exc
    return create_retrieval_chain(retriever, create_stuff_documents_chain(model, STUFF_PROMPT))


@dataclass
class LangChainApp:
    """One app: the chain as users write it and LangChain's best hand-tuned form of it.

    ``reference`` is the form Teola's answers are compared with: the native chain, or, where Teola
    runs LLM calls together that the native chain runs one by one, the hand-tuned form that runs
    them together too (vLLM on CPU is not batch-invariant: calls decoded together can differ at
    near-ties from calls decoded alone).
    """

    name: AppName
    native: Runnable
    hand_tuned: Runnable
    reference: Literal["native", "hand_tuned"] = "native"

    @property
    def reference_chain(self) -> Runnable:
        """The chain ``reference`` names."""
        return self.native if self.reference == "native" else self.hand_tuned


def build_app(name: AppName, store: TeolaVectorStore, model: TeolaChatModel, top_k: int = 3,
              search_url: str | None = None) -> LangChainApp:
    """The app ``name`` over ``store``:

    - search: search-engine-empowered generation: the question goes to the web-search API at
      ``search_url`` (a ``RunnableLambda`` around it), its top-k snippets are answered from as in rag;
    - rag: retrieve top-k | format, a question-first prompt, chat model, string parser (the
      tutorial's chain; its parallel dict already is the hand-tuned form);
    - fusion: RAG-fusion: the model writes a numbered list of queries, the first 3 are each
      retrieved (``retriever.map()``), the lists are fused by reciprocal rank, then answered as in rag;
    - contextual: contextual retrieval: top-k chunks, each situated by the model in one sentence about
      the question (``contextualize.map()``, which LangChain already runs concurrently, so it is its
      own hand-tuned form), then answered from the contextualized chunks;
    - branches: a draft answer and a list of facts, two LLM calls that both read only the question,
      joined by a third; written as two ``.assign`` steps, hand-tuned as one ``RunnableParallel``;
    - route: routing, as LangChain's routing guide writes it: the model classifies the question, then
      a ``RunnableBranch`` answers a question about a statement as in rag and any other from the
      model alone (LangChain has no faster form: the branch depends on the class);
    - route_fn: the same routing in the guide's recommended form, a ``RunnableLambda`` whose function
      returns the chain to run;
    - stuff: LangChain's standard chains, ``create_retrieval_chain(retriever,
      create_stuff_documents_chain(model, prompt))`` (langchain-classic), given ``{"input": question}``
      and read for its ``answer``;
    - fallback: ``with_fallbacks``, guarding a context that may not fit: rag over 40 chunks, a prompt
      longer than the model's context (the engine refuses it), falls back to the question alone;
    - retry: rag under ``with_retry`` (two attempts, as a flaky network calls for): on healthy engines
      the first attempt answers;
    - ensemble: rag over langchain-classic's ``EnsembleRetriever`` (``ensemble_retriever``).
    """
    retriever = store.as_retriever(search_kwargs={"k": top_k})
    answer = RAG_PROMPT | model | StrOutputParser()
    if name == "search":
        if search_url is None:
            raise ValueError("the search app needs search_url: start a teola_integrations.tools.search_service.SearchService")
        search = search_documents(search_url, top_k)
        chain = {"context": itemgetter("question") | search | format_docs, "question": itemgetter("question")} | answer
        return LangChainApp(name, chain, chain)
    if name == "contextual":
        contextualize = CONTEXT_PROMPT | model | StrOutputParser()
        contexts = RunnableLambda(passages) | contextualize.map() | join_contexts
        chain = (RunnablePassthrough.assign(docs=itemgetter("question") | retriever)
                 | {"context": contexts, "question": itemgetter("question")} | answer)
        return LangChainApp(name, chain, chain)
    if name == "rag":
        chain = rag_answer(retriever, answer)
        return LangChainApp(name, chain, chain)
    if name == "fusion":
        queries = QUERIES_PROMPT | model | NumberedListOutputParser() | itemgetter(slice(QUERIES))
        fused = queries | retriever.map() | RunnableLambda(reciprocal_rank_fusion)
        chain = {"context": fused | format_docs, "question": itemgetter("question")} | answer
        return LangChainApp(name, chain, chain)
    if name == "stuff":
        chain = {"input": itemgetter("question")} | standard_retrieval_chain(retriever, model) | itemgetter("answer")
        return LangChainApp(name, chain, chain)
    if name == "retry":
        chain = rag_answer(retriever, answer).with_retry(stop_after_attempt=2)
        return LangChainApp(name, chain, chain)
    if name == "ensemble":
        chain = rag_answer(ensemble_retriever(store, top_k), answer)
        return LangChainApp(name, chain, chain)
    if name == "fallback":
        too_much = rag_answer(store.as_retriever(search_kwargs={"k": TOO_MANY_CHUNKS}), answer)
        chain = too_much.with_fallbacks([ANSWER_PROMPT | model | StrOutputParser()])
        return LangChainApp(name, chain, chain)
    if name in ("route", "route_fn"):
        classify = ROUTE_PROMPT | model | StrOutputParser()
        retrieved, plain = rag_answer(retriever, answer), ANSWER_PROMPT | model | StrOutputParser()

        def about_a_statement(x: dict) -> bool:
            return "statement" in x["topic"].lower()

        def route(x: dict) -> Runnable:
            return retrieved if about_a_statement(x) else plain

        pick = RunnableBranch((about_a_statement, retrieved), plain) if name == "route" else RunnableLambda(route)
        chain = {"topic": classify, "question": lambda x: x["question"]} | pick
        return LangChainApp(name, chain, chain)
    draft = ANSWER_PROMPT | model | StrOutputParser()
    facts = FACTS_PROMPT | model | StrOutputParser()
    join = JOIN_PROMPT | model | StrOutputParser()
    native = RunnablePassthrough.assign(answer=draft) | RunnablePassthrough.assign(facts=facts) | join
    hand_tuned = RunnableParallel(question=itemgetter("question"), answer=draft, facts=facts) | join
    return LangChainApp(name, native, hand_tuned, reference="hand_tuned")


def ensemble_retriever(store: TeolaVectorStore, k: int) -> Runnable:
    """langchain-classic's ``EnsembleRetriever`` as its guide builds one: two retrievers of the same
    question fused by weighted reciprocal rank, here ``store``'s top-k and the top-k of LangChain's
    own ``InMemoryVectorStore`` over the corpus's first 60 chunks (an index a team keeps beside its
    main one), on the same embedding model."""
    try:
        from langchain_classic.retrievers import EnsembleRetriever
    except ImportError as exc:
        raise ImportError("the ensemble app needs langchain-classic's EnsembleRetriever: "
                          "pip install langchain-classic (or teola[clients])") from exc
    from langchain_core.vectorstores import InMemoryVectorStore

    second = InMemoryVectorStore(store.embeddings)
    second.add_documents(corpus_documents(60))
    return EnsembleRetriever(retrievers=[store.as_retriever(search_kwargs={"k": k}),
                                         second.as_retriever(search_kwargs={"k": k})], weights=[0.6, 0.4])


def corpus_documents(corpus_limit: int | None = None) -> list[Document]:
    """The demo corpus's chunks as LangChain documents (the corpus ids, topics as metadata)."""
    return [Document(id=c.id, page_content=c.text, metadata={"topic": c.topic}) for c in load_corpus(corpus_limit)]


def build_store(corpus_limit: int | None = None) -> TeolaVectorStore:
    """The demo corpus in a ``TeolaVectorStore``."""
    return TeolaVectorStore.from_documents(corpus_documents(corpus_limit), TeolaEmbeddings())
