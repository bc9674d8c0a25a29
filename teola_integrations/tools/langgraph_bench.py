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
import statistics
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from teola_integrations.langgraph import optimize, pure
from teola_integrations.tools.compare import interleave, spread


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


def bench_barrier(slow_ms: float, fast_ms: float, chains: list[int], questions: int, repeats: int) -> dict[str, Any]:
    """Native vs Teola on the barrier graph for each chain length, interleaved in one process."""
    results: dict[str, Any] = {}
    for chain in chains:
        graph = barrier_graph(slow_ms / 1e3, fast_ms / 1e3, chain)
        optimized = optimize(graph)
        modes = {
            "native": lambda q, g=graph: g.invoke({"question": q}),
            "teola": lambda q, g=optimized: g.invoke({"question": q}),
        }
        rows = interleave(modes, [f"question {i}" for i in range(questions)], repeats, desc=f"chain of {chain}")
        ratios = [statistics.median(r["latency"]["native"]) / statistics.median(r["latency"]["teola"]) for r in rows]
        ratio, q1, q3 = spread(ratios)
        results[f"chain of {chain}"] = {
            "chain": chain,
            "rows": rows,
            "ms": {m: 1e3 * statistics.median(statistics.median(r["latency"][m]) for r in rows) for m in modes},
            "ratio": {"median": ratio, "q1": q1, "q3": q3},
            "ideal_ms": {"native": max(slow_ms, fast_ms) + (chain - 1) * fast_ms, "teola": max(slow_ms, chain * fast_ms)},
            "same_state": all(r["same_text"]["teola"] for r in rows),
        }
    return {"slow_ms": slow_ms, "fast_ms": fast_ms, "results": results}


def format_barrier(report: dict[str, Any]) -> str:
    """One line per chain length: measured and ideal medians, the ratio with its IQR, state equality."""
    lines = [
        f"slow node {report['slow_ms']:.0f} ms beside a chain of fast nodes of {report['fast_ms']:.0f} ms each",
        f"{'graph':<12} {'native ms':>10} {'teola ms':>9} {'ideal n/t':>12} {'ratio (IQR)':>20}  same state",
    ]
    for name, r in report["results"].items():
        ideal = f"{r['ideal_ms']['native']:.0f}/{r['ideal_ms']['teola']:.0f}"
        ratio = f"{r['ratio']['median']:.2f} ({r['ratio']['q1']:.2f}-{r['ratio']['q3']:.2f})"
        lines.append(f"{name:<12} {r['ms']['native']:>10.0f} {r['ms']['teola']:>9.0f} {ideal:>12} {ratio:>20}  {r['same_state']}")
    return "\n".join(lines)
