"""Benchmarks of the LangChain apps: native, LangChain's best hand-tuned form, and Teola.

One process, the same shared engines for every mode, interleaved repeats, medians with spreads;
under load, the same Poisson arrivals (same seed) for each mode. Nothing here asserts a speed.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Sequence

from teola_integrations.benchmark import load_table, poisson_load
from teola_integrations.compare import interleave, spread
from teola_integrations.langchain.apps import LangChainApp
from teola_integrations.langchain.runnable import optimize

MODES = ("native", "hand_tuned", "teola")


def _modes(app: LangChainApp) -> dict[str, Callable[[str], Any]]:
    fast = optimize(app.native)
    return {"native": lambda q: app.native.invoke({"question": q}),
            "hand_tuned": lambda q: app.hand_tuned.invoke({"question": q}),
            "teola": lambda q: fast.invoke({"question": q})}


def single_query(app: LangChainApp, questions: list[str], repeats: int) -> dict[str, Any]:
    """The three modes, one query at a time, interleaved; speed-ups of Teola over each native form."""
    modes = _modes(app)
    reference = app.reference
    ordered = {reference: modes[reference], **{m: modes[m] for m in MODES if m != reference}}
    rows = interleave(ordered, questions, repeats, desc=f"{app.name}: single query")
    median_ms = {m: 1e3 * statistics.median(statistics.median(r["latency"][m]) for r in rows) for m in MODES}
    speedups = {}
    for baseline in ("native", "hand_tuned"):
        ratio, low, high = spread([statistics.median(r["latency"][baseline]) / statistics.median(r["latency"]["teola"])
                                   for r in rows])
        speedups[baseline] = {"median": ratio, "q1": low, "q3": high}
    return {"rows": rows, "ms": median_ms, "speedup_over": speedups, "reference": reference,
            "same_answers": sum(r["same_text"]["teola"] for r in rows), "questions": len(rows)}


def load(app: LangChainApp, questions: list[str], rates: Sequence[float], count: int) -> list[dict[str, Any]]:
    """Every mode under the same Poisson arrivals at each rate."""
    modes = _modes(app)
    return [{"mode": mode, **poisson_load(modes[mode], questions, rate, count, desc=f"{app.name} {mode} @ {rate:.2f}/s")}
            for rate in rates for mode in MODES]


def format_report(report: dict[str, Any]) -> str:
    """The tables, as text."""
    lines = ["LangChain apps, single query (median of per-question medians; speed-up = baseline/teola, IQR):",
             f"{'app':<9} {'native ms':>10} {'hand-tuned':>10} {'teola ms':>9}  {'vs native':>16}  {'vs hand-tuned':>16}  same answers"]
    for name, r in report.get("single", {}).items():
        n, h = r["speedup_over"]["native"], r["speedup_over"]["hand_tuned"]
        lines.append(f"{name:<9} {r['ms']['native']:>10.0f} {r['ms']['hand_tuned']:>10.0f} {r['ms']['teola']:>9.0f}  "
                     f"{n['median']:>5.2f} ({n['q1']:.2f}-{n['q3']:.2f})  {h['median']:>5.2f} ({h['q1']:.2f}-{h['q3']:.2f})  "
                     f"{r['same_answers']}/{r['questions']} vs {r['reference']}")
    if "load" in report:
        lines += ["", *load_table(report["load"])]
    return "\n".join(lines)
