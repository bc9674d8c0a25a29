"""Benchmarks: native LlamaIndex vs Teola on the demo apps, pass ablation, critical-path floor, load.

Everything runs in one process on the same shared engines, native and Teola interleaved, and
reports medians with spreads (these machines are noisy). Nothing here asserts a speed: the
figures are for people to read and compare.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from tqdm import tqdm

from teola.optimizer.passes import PASSES
from teola.optimizer.passes.prune_dependencies import prune_dependencies
from teola.runtime.critical_path import critical_path, isolated_latencies
from teola_integrations.compare import interleave, spread
from teola_integrations.llama_index import optimize


def _ratio_summary(rows: list[dict[str, Any]], mode: str, reference: str) -> dict[str, float]:
    """Median over questions of median(mode) / median(reference), with its IQR."""
    ratios = [statistics.median(r["latency"][mode]) / statistics.median(r["latency"][reference]) for r in rows]
    median, low, high = spread(ratios)
    return {"median": median, "q1": low, "q3": high}


def single_query(app: Any, questions: list[str], repeats: int) -> dict[str, Any]:
    """Native vs Teola (all passes), one query at a time, interleaved."""
    fast = optimize(app)
    rows = interleave({"native": app.query, "teola": fast.query}, questions, repeats, desc="single query")
    return {
        "rows": rows,
        "native_ms": 1e3 * statistics.median(statistics.median(r["latency"]["native"]) for r in rows),
        "teola_ms": 1e3 * statistics.median(statistics.median(r["latency"]["teola"]) for r in rows),
        "speedup": _ratio_summary(rows, "native", "teola"),
        "same_answers": sum(r["same_text"]["teola"] and r["same_sources"]["teola"] for r in rows),
        "questions": len(rows),
    }


def ablation(app: Any, questions: list[str], repeats: int) -> dict[str, Any]:
    """Latency of no passes, each pass alone, and all passes, relative to all passes (1.0)."""
    modes: dict[str, Callable[[str], Any]] = {"native": app.query, "all": optimize(app).query,
                                              "none": optimize(app, passes=()).query}
    for name in PASSES:
        modes[name] = optimize(app, passes=(name,)).query
    rows = interleave(modes, questions, repeats, desc="ablation")
    return {
        "relative_to_all": {mode: _ratio_summary(rows, mode, "all") for mode in modes},
        "same_answers": {mode: sum(r["same_text"][mode] and r["same_sources"][mode] for r in rows) for mode in modes},
        "questions": len(rows),
        "rows": rows,
    }


def critical_path_floor(app: Any, questions: list[str], repeats: int) -> dict[str, Any]:
    """Per question: the floor (longest dependent chain of isolated primitive latencies, measured on
    the plan run in the framework's order) beside Teola's median latency with every pass."""
    serial, fast = optimize(app, passes=()), optimize(app)
    true_dependencies = prune_dependencies(serial.plan)
    per_question = []
    for question in tqdm(questions, desc="critical path", unit="question"):
        serial.query(question)
        floors, paths, teola = [], [], []
        for _ in range(repeats):
            serial.query(question)
            length, path = critical_path(true_dependencies, isolated_latencies(serial.last_trace))
            floors.append(length)
            paths.append(path)
            start = time.perf_counter()
            fast.query(question)
            teola.append(time.perf_counter() - start)
        per_question.append({"question": question, "floor_ms": 1e3 * statistics.median(floors),
                             "teola_ms": 1e3 * statistics.median(teola), "path": paths[0]})
    ratios = [q["teola_ms"] / q["floor_ms"] for q in per_question]
    median, low, high = spread(ratios)
    return {"per_question": per_question, "teola_over_floor": {"median": median, "q1": low, "q3": high}}


def poisson_load(query: Callable[[str], Any], questions: Sequence[str], rate: float, count: int,
                 seed: int = 0, desc: str = "load") -> dict[str, float]:
    """Send ``count`` queries with Poisson arrivals at ``rate`` per second, each on its own thread
    (as a threaded server would); latency is from arrival to answer."""
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    for _ in range(count):
        t += rng.expovariate(rate)
        arrivals.append(t)
    latencies: list[float] = []
    lock = threading.Lock()
    bar = tqdm(total=count, desc=desc, unit="query")

    def one(question: str) -> None:
        start = time.perf_counter()
        query(question)
        with lock:
            latencies.append(time.perf_counter() - start)
            bar.update()

    begin = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = []
        for i, arrival in enumerate(arrivals):
            time.sleep(max(0.0, begin + arrival - time.perf_counter()))
            futures.append(pool.submit(one, questions[i % len(questions)]))
        for future in futures:
            future.result()
    elapsed = time.perf_counter() - begin
    bar.close()
    latencies.sort()
    return {"rate": rate, "queries": count, "mean_ms": 1e3 * statistics.fmean(latencies),
            "p50_ms": 1e3 * statistics.median(latencies),
            "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "throughput_qps": count / elapsed}


def load(app: Any, questions: list[str], rates: Sequence[float], count: int) -> list[dict[str, Any]]:
    """Native and Teola under the same Poisson arrivals (same seed) at each rate."""
    fast = optimize(app)
    results = []
    for rate in rates:
        for mode, query in (("native", app.query), ("teola", fast.query)):
            results.append({"mode": mode, **poisson_load(query, questions, rate, count, desc=f"{mode} @ {rate:.2f}/s")})
    return results


def format_report(report: dict[str, Any]) -> str:
    """The benchmark's tables, as text."""
    lines = ["single query (median over questions of per-question medians; speed-up = native/teola, IQR):",
             f"{'app':<10} {'native ms':>10} {'teola ms':>10} {'speed-up':>9} {'IQR':>13}  same answers"]
    for app, r in report.get("single", {}).items():
        s = r["speedup"]
        lines.append(f"{app:<10} {r['native_ms']:>10.0f} {r['teola_ms']:>10.0f} {s['median']:>9.2f} "
                     f"{s['q1']:>6.2f}-{s['q3']:<6.2f}  {r['same_answers']}/{r['questions']}")
    if "ablation" in report:
        lines += ["", "ablation on advanced RAG (latency relative to all passes; IQR; same answers as native):"]
        for mode, s in report["ablation"]["relative_to_all"].items():
            same = report["ablation"]["same_answers"][mode]
            lines.append(f"  {mode:<18} {s['median']:>6.2f}  ({s['q1']:.2f}-{s['q3']:.2f})  {same}/{report['ablation']['questions']}")
    if "critical_path" in report:
        lines += ["", "critical-path floor (isolated primitive latencies on the longest dependent chain):"]
        for app, r in report["critical_path"].items():
            s = r["teola_over_floor"]
            lines.append(f"  {app:<10} teola/floor median {s['median']:.2f} ({s['q1']:.2f}-{s['q3']:.2f})")
            for q in r["per_question"][:3]:
                lines.append(f"    floor {q['floor_ms']:.0f} ms, teola {q['teola_ms']:.0f} ms: {' -> '.join(q['path'])}")
    if "load" in report:
        lines += ["", *load_table(report["load"])]
    return "\n".join(lines)


def load_table(load: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Poisson-load rows (per app, per rate and mode) as text lines."""
    lines = ["Poisson load:", f"  {'app':<10} {'mode':<11} {'rate/s':>7} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9} {'done/s':>7}"]
    for app, rows in load.items():
        for r in rows:
            lines.append(f"  {app:<10} {r['mode']:<11} {r['rate']:>7.2f} {r['mean_ms']:>9.0f} {r['p50_ms']:>9.0f} "
                         f"{r['p99_ms']:>9.0f} {r['throughput_qps']:>7.2f}")
    return lines
