"""The superstep barrier alone: one slow node beside a chain of fast ones, native LangGraph vs Teola.

The graph is the one LangGraph users report (langgraph #3617, #6320): ``START -> slow`` and
``START -> f1 -> ... -> fN``, joined by ``join`` once both are done. Its nodes are pure Python of known
cost (each sleeps, as a node waiting on a model server or an API does), so the figures measure the
barrier and nothing else. Natively ``f2`` waits for ``slow`` (they are in different supersteps):
``slow + (N-1) * fast`` before the join. With Teola the chain runs beside ``slow``:
``max(slow, N * fast)``.
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, Callable, TypedDict

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph

from teola_integrations.langchain import TeolaChatModel
from teola_integrations.langgraph import optimize, pure
from teola_integrations.tools.benchmark import median_ms, poisson_load, ratio_summary
from teola_integrations.tools.compare import interleave
from teola_integrations.tools.langchain_apps import build_store, format_docs


class BarrierState(TypedDict, total=False):
    """The benchmark graph's state."""

    question: str
    slow: str
    trail: Annotated[list, operator.add]
    answer: str


def barrier_graph(slow_s: float, fast_s: float, chain: int) -> Any:
    """The compiled benchmark graph (its fast nodes marked pure)."""

    def slow(state: BarrierState) -> dict:
        time.sleep(slow_s)
        return {"slow": state["question"].upper()}

    def fast(i: int):
        @pure
        def node(state: BarrierState) -> dict:
            time.sleep(fast_s)
            return {"trail": [f"f{i}:{len(state.get('trail', []))}"]}

        return node

    def join(state: BarrierState) -> dict:
        return {"answer": f"{state['slow']}|{','.join(state['trail'])}"}

    builder = StateGraph(BarrierState)
    builder.add_node("slow", slow)
    builder.add_node("join", join)
    previous = START
    for i in range(1, chain + 1):
        builder.add_node(f"f{i}", fast(i))
        builder.add_edge(previous, f"f{i}")
        previous = f"f{i}"
    builder.add_edge(START, "slow")
    builder.add_edge(["slow", previous], "join")
    builder.add_edge("join", END)
    return builder.compile()


def _compare(graph: Any, optimized: Any, questions: list[str], repeats: int, desc: str) -> dict[str, Any]:
    """``graph`` and ``optimize(graph)``, interleaved on ``questions``: medians, ratio (IQR), equal states."""
    modes = {
        "native": lambda q: graph.invoke({"question": q}),
        "teola": lambda q: optimized.invoke({"question": q}),
    }
    rows = interleave(modes, questions, repeats, desc=desc)
    return {
        "rows": rows,
        "ms": {m: median_ms(rows, m) for m in modes},
        "ratio": ratio_summary(rows, "native", "teola"),
        "same_state": all(r["same_text"]["teola"] for r in rows),
    }


def bench_barrier(slow_ms: float, fast_ms: float, chains: list[int], questions: int, repeats: int) -> dict[str, Any]:
    """Native vs Teola on the barrier graph for each chain length, interleaved in one process."""
    results: dict[str, Any] = {}
    for chain in chains:
        graph = barrier_graph(slow_ms / 1e3, fast_ms / 1e3, chain)
        result = _compare(graph, optimize(graph), [f"question {i}" for i in range(questions)], repeats,
                          f"chain of {chain}")
        ideal = {"native": max(slow_ms, fast_ms) + (chain - 1) * fast_ms, "teola": max(slow_ms, chain * fast_ms)}
        results[f"chain of {chain}"] = {"chain": chain, "ideal_ms": ideal, **result}
    return {"slow_ms": slow_ms, "fast_ms": fast_ms, "results": results}


class LLMBarrierState(TypedDict, total=False):
    """The LLM benchmark graph's state."""

    question: str
    answer: str
    query: str
    keywords: str
    title: str
    report: str


def _llm_chain(template: str, model: Any) -> Any:
    """``prompt | model | parser`` with a one-line system prompt, as LangGraph's tutorials write them."""
    prompt = ChatPromptTemplate.from_messages([("system", "You are a concise assistant."), ("human", template)])
    return prompt | model | StrOutputParser()


def _chain_node(chain: Any, output: str, **inputs: str) -> Callable[[dict], dict]:
    """A pure node that fills ``chain``'s variables from state keys (``variable="key"``) and writes its
    answer to ``output``: a function calling an LCEL chain, as LangGraph's tutorials write nodes."""

    @pure
    def node(state: dict) -> dict:
        return {output: chain.invoke({variable: state[key] for variable, key in inputs.items()})}

    return node


def llm_barrier_graph(slow_model: Any, fast_model: Any) -> Any:
    """The barrier with real LLM nodes: a long answer beside a chain of three short LLM steps (rewrite
    the question, pick keywords, title them), joined into a report."""
    answer_node = _chain_node(_llm_chain("Answer in detail: {question}", slow_model), "answer", question="question")
    rewrite_node = _chain_node(_llm_chain("Rewrite as a short search query: {question}", fast_model), "query",
                               question="question")
    keywords_node = _chain_node(_llm_chain("List three keywords for: {query}", fast_model), "keywords", query="query")
    title_node = _chain_node(_llm_chain("Write a title from these keywords: {keywords}", fast_model), "title",
                             keywords="keywords")

    def report(state: LLMBarrierState) -> dict:
        return {"report": f"{state['title']}\n{state['answer']}"}

    builder = StateGraph(LLMBarrierState)
    for name, node in (("answer", answer_node), ("rewrite", rewrite_node), ("keywords", keywords_node),
                       ("title", title_node), ("report", report)):
        builder.add_node(name, node)
    builder.add_edge(START, "answer")
    builder.add_edge(START, "rewrite")
    builder.add_edge("rewrite", "keywords")
    builder.add_edge("keywords", "title")
    builder.add_edge(["answer", "title"], "report")
    builder.add_edge("report", END)
    return builder.compile()


def bench_llm_barrier(slow_tokens: int, fast_tokens: int, questions: list[str], repeats: int,
                      rates: list[float], load_queries: int) -> dict[str, Any]:
    """Native vs Teola on ``llm_barrier_graph`` with Teola's CPU engine (greedy): single queries
    interleaved, then Poisson load (``under_load``; no rates: none)."""
    graph = llm_barrier_graph(TeolaChatModel(max_tokens=slow_tokens), TeolaChatModel(max_tokens=fast_tokens))
    optimized = optimize(graph)
    result = _compare(graph, optimized, questions, repeats, "LLM nodes")
    return {"slow_tokens": slow_tokens, "fast_tokens": fast_tokens, "results": {"LLM nodes": result},
            "load": under_load(graph, optimized, result, questions, rates, load_queries)}


class RagState(TypedDict, total=False):
    """The RAG graph's state."""

    question: str
    docs: list
    query: str
    relevant: str
    answer: str


def rag_graph(store: Any, model: Any, short_model: Any) -> Any:
    """A RAG graph of the kind LangGraph's tutorials build: retrieve with the question while an LLM
    rewrites it; an LLM grades what was retrieved; an LLM answers from the graded context and the
    rewritten question. Natively the grade waits for the rewrite (they are in different supersteps);
    with Teola it runs beside it. Every node is a function calling an LCEL chain or a retriever,
    marked pure."""
    retriever = store.as_retriever(search_kwargs={"k": 3})
    grade = _llm_chain("Context:\n{context}\n\nIs this context relevant to: {question}? Answer yes or no.", short_model)
    generate = _llm_chain("Context:\n{context}\n\nAnswer the question: {query}", model)
    rewrite_node = _chain_node(_llm_chain("Rewrite as a short search query: {question}", short_model), "query",
                               question="question")

    @pure
    def retrieve_node(state: RagState) -> dict:
        return {"docs": retriever.invoke(state["question"])}

    @pure
    def grade_node(state: RagState) -> dict:
        return {"relevant": grade.invoke({"context": format_docs(state["docs"]), "question": state["question"]})}

    @pure
    def generate_node(state: RagState) -> dict:
        docs = state["docs"] if state["relevant"].strip().lower().startswith("yes") else state["docs"][:1]
        return {"answer": generate.invoke({"context": format_docs(docs), "query": state["query"]})}

    builder = StateGraph(RagState)
    for name, node in (("retrieve", retrieve_node), ("rewrite", rewrite_node), ("grade", grade_node),
                       ("generate", generate_node)):
        builder.add_node(name, node)
    builder.add_edge(START, "retrieve")
    builder.add_edge(START, "rewrite")
    builder.add_edge("retrieve", "grade")
    builder.add_edge(["grade", "rewrite"], "generate")
    builder.add_edge("generate", END)
    return builder.compile()


def _answers_kept(query: Callable[[str], Any], reference: dict[str, Any], same: list[bool]) -> Callable[[str], Any]:
    def checked(question: str) -> Any:
        state = query(question)
        same.append(str(state) == reference[question])
        return state

    return checked


def under_load(graph: Any, optimized: Any, single: dict[str, Any], questions: list[str], rates: list[float],
               load_queries: int) -> list[dict[str, Any]]:
    """``graph`` natively, optimized with its nodes' engine work in arrival order, and ``optimized`` (its
    work ordered by the graph's critical path), under the same Poisson arrivals at each rate; every
    final state compared with the native single-query one (``single``'s rows)."""
    reference = {row["question"]: row["answer"] for row in single["rows"]}
    modes = {"native": graph, "teola-arrival": optimize(graph, critical_path=False), "teola": optimized}
    rows = []
    for rate in rates:
        for mode, g in modes.items():
            same: list[bool] = []
            query = _answers_kept(lambda q, g=g: g.invoke({"question": q}), reference, same)
            row = poisson_load(query, questions, rate, load_queries, desc=f"{mode} @ {rate:.2f}/s")
            rows.append({"mode": mode, **row, "same_state": sum(same), "of": len(same)})
    return rows


def bench_rag(questions: list[str], repeats: int, rates: list[float], load_queries: int,
              max_tokens: int, short_tokens: int) -> dict[str, Any]:
    """``rag_graph`` on Teola's CPU engines: single queries interleaved, then Poisson load (``under_load``)."""
    graph = rag_graph(build_store(), TeolaChatModel(max_tokens=max_tokens), TeolaChatModel(max_tokens=short_tokens))
    optimized = optimize(graph)
    single = _compare(graph, optimized, questions, repeats, "RAG graph")
    return {"max_tokens": max_tokens, "short_tokens": short_tokens, "results": {"RAG graph": single},
            "load": under_load(graph, optimized, single, questions, rates, load_queries)}


def format_load(load: list[dict[str, Any]]) -> str:
    """One line per rate and mode: p50, p99, throughput, states equal to native's."""
    lines = [f"{'rate/s':>7} {'mode':<13} {'p50 ms':>8} {'p99 ms':>8} {'q/s':>6}  same state"]
    for row in load:
        lines.append(f"{row['rate']:>7.2f} {row['mode']:<13} {row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f} "
                     f"{row['throughput_qps']:>6.2f}  {row['same_state']}/{row['of']}")
    return "\n".join(lines)


def format_barrier(report: dict[str, Any]) -> str:
    """One line per graph: measured (and, for sleeping nodes, ideal) medians, the ratio with its IQR,
    state equality."""
    if "slow_ms" in report:
        title = f"slow node {report['slow_ms']:.0f} ms beside a chain of fast nodes of {report['fast_ms']:.0f} ms each"
    elif "max_tokens" in report:
        title = (f"a RAG graph (retrieve | rewrite, grade, generate; answers up to {report['max_tokens']} tokens, "
                 f"rewrite and grade up to {report['short_tokens']}) on Teola's CPU engines, greedy")
    else:
        title = (f"an LLM answer of up to {report['slow_tokens']} tokens beside a chain of 3 LLM steps of up to "
                 f"{report['fast_tokens']} tokens (Teola's CPU engine, greedy)")
    lines = [title, f"{'graph':<12} {'native ms':>10} {'teola ms':>9} {'ideal n/t':>12} {'ratio (IQR)':>20}  same state"]
    for name, r in report["results"].items():
        ideal = f"{r['ideal_ms']['native']:.0f}/{r['ideal_ms']['teola']:.0f}" if "ideal_ms" in r else "-"
        ratio = f"{r['ratio']['median']:.2f} ({r['ratio']['q1']:.2f}-{r['ratio']['q3']:.2f})"
        lines.append(f"{name:<12} {r['ms']['native']:>10.0f} {r['ms']['teola']:>9.0f} {ideal:>12} {ratio:>20}  {r['same_state']}")
    return "\n".join(lines)
