"""The benchmark suite: native, the framework's best hand-tuned form, and Teola, on both frameworks.

For every app: single-query latency (interleaved repeats in one process, medians with spreads,
ratios), the pass ablation, the critical-path floor, and Poisson load at several rates (mean, p50,
p99, throughput, and the highest rate each mode holds under a p99 target). All modes run on the
same shared engines. Nothing here asserts a speed: the figures are for people to read and compare.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, Callable, Iterable, Sequence

from tqdm import tqdm

from teola.optimizer.passes import PASSES
from teola.optimizer.passes.prune_dependencies import prune_dependencies
from teola.runtime.critical_path import critical_path, isolated_latencies
from teola.runtime.traces import record_traces
from teola_integrations.tools.compare import interleave, spread

MODES = ("native", "hand_tuned", "teola")


@dataclass
class SuiteApp:
    """One app in one framework: the pipeline as written, the framework's best hand-tuned form of it
    (``None`` where the framework offers nothing faster than the app as written), how to ask a
    pipeline a question, and the framework's ``optimize``. ``reference`` names the mode Teola's answers
    are compared with (see ``teola_integrations.tools.langchain_apps.LangChainApp``)."""

    framework: str
    name: str
    native: Any
    hand_tuned: Any | None
    ask: Callable[[Any, str], Any]
    optimize: Callable[..., Any]
    reference: str = "native"

    @property
    def label(self) -> str:
        """``framework/app``."""
        return f"{self.framework}/{self.name}"

    @cached_property
    def teola(self) -> Any:
        """The app optimized with every pass, built once for every part of the suite."""
        return self.optimize(self.native)

    def modes(self) -> dict[str, Callable[[str], Any]]:
        """Each mode as question -> answer, the reference first."""
        modes = {"native": partial(self.ask, self.native)}
        if self.hand_tuned is not None:
            modes["hand_tuned"] = partial(self.ask, self.hand_tuned)
        modes["teola"] = partial(self.ask, self.teola)
        return {self.reference: modes[self.reference], **modes}


def median_ms(rows: list[dict[str, Any]], mode: str) -> float:
    return 1e3 * statistics.median(statistics.median(r["latency"][mode]) for r in rows)


def ratio_summary(rows: list[dict[str, Any]], numerator: str, denominator: str) -> dict[str, float]:
    """Median over questions of median(numerator) / median(denominator), with its IQR."""
    median, low, high = spread([statistics.median(r["latency"][numerator]) / statistics.median(r["latency"][denominator])
                                for r in rows])
    return {"median": median, "q1": low, "q3": high}


def single_query(app: SuiteApp, questions: list[str], repeats: int) -> dict[str, Any]:
    """Every mode, one query at a time, interleaved; Teola's speed-up over each baseline (baseline/teola).

    Each mode first answers the first question once, unmeasured: a mode's first query pays one-off
    costs (its plan's first engine requests, connection set-up) that are not its latency."""
    modes = app.modes()
    for query in modes.values():
        query(questions[0])
    rows = interleave(modes, questions, repeats, desc=f"{app.label}: single query")
    baselines = [m for m in ("native", "hand_tuned") if m in modes]
    return {
        "rows": rows, "reference": app.reference, "questions": len(rows),
        "ms": {mode: median_ms(rows, mode) for mode in modes},
        "speedup_over": {b: ratio_summary(rows, b, "teola") for b in baselines},
        "same_answers": sum(r["same_text"]["teola"] and r["same_sources"]["teola"] for r in rows),
    }


def ablation(app: SuiteApp, questions: list[str], repeats: int) -> dict[str, Any]:
    """Latency of no passes, each pass alone, and all passes, relative to all passes (1.0), beside
    the reference mode (whose answers the others are compared with)."""
    reference = app.native if app.reference == "native" else app.hand_tuned
    modes: dict[str, Callable[[str], Any]] = {app.reference: partial(app.ask, reference),
                                              "all": partial(app.ask, app.teola),
                                              "none": partial(app.ask, app.optimize(app.native, passes=()))}
    for name in PASSES:
        modes[name] = partial(app.ask, app.optimize(app.native, passes=(name,)))
    rows = interleave(modes, questions, repeats, desc=f"{app.label}: ablation")
    return {
        "reference": app.reference,
        "relative_to_all": {mode: ratio_summary(rows, mode, "all") for mode in modes},
        "same_answers": {mode: sum(r["same_text"][mode] and r["same_sources"][mode] for r in rows) for mode in modes},
        "questions": len(rows),
        "rows": rows,
    }


def critical_path_floor(app: SuiteApp, questions: list[str], repeats: int) -> dict[str, Any]:
    """Per question: the floor (longest dependent chain of isolated primitive latencies, measured on
    the plan run in the framework's order) beside Teola's median latency with every pass."""
    serial, fast = app.optimize(app.native, passes=()), app.teola
    true_dependencies = prune_dependencies(serial.plan)
    per_question = []
    for question in tqdm(questions, desc=f"{app.label}: critical path", unit="question"):
        app.ask(serial, question)
        floors, paths, teola = [], [], []
        for _ in range(repeats):
            with record_traces() as recorded:
                app.ask(serial, question)
            length, path = critical_path(true_dependencies, isolated_latencies(recorded[-1]))
            floors.append(length)
            paths.append(path)
            start = time.perf_counter()
            app.ask(fast, question)
            teola.append(time.perf_counter() - start)
        per_question.append({"question": question, "floor_ms": 1e3 * statistics.median(floors),
                             "teola_ms": 1e3 * statistics.median(teola), "path": paths[0]})
    median, low, high = spread([q["teola_ms"] / q["floor_ms"] for q in per_question])
    return {"per_question": per_question, "floor_ms": statistics.median(q["floor_ms"] for q in per_question),
            "teola_over_floor": {"median": median, "q1": low, "q3": high}}


def poisson_load(query: Callable[[str], Any], questions: Sequence[str], rate: float, count: int,
                 seed: int = 0, desc: str = "load") -> dict[str, Any]:
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
            "throughput_qps": count / elapsed, "latencies_ms": [1e3 * x for x in latencies]}


def load(app: SuiteApp, questions: list[str], rates: Sequence[float], count: int) -> list[dict[str, Any]]:
    """Every mode under the same Poisson arrivals (same seed) at each rate, each mode warmed first
    with one unmeasured query (as in ``single_query``)."""
    modes = app.modes()
    for query in modes.values():
        query(questions[0])
    return [{"mode": mode, **poisson_load(query, questions, rate, count, desc=f"{app.label} {mode} @ {rate:.2f}/s")}
            for rate in rates for mode, query in modes.items()]


def highest_rate_under(rows: list[dict[str, Any]], p99_target_ms: float) -> dict[str, float | None]:
    """Per mode, the highest measured rate whose p99 stays within ``p99_target_ms`` and every rate
    below it does too (None: not even the lowest rate does)."""
    held: dict[str, float | None] = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        held[mode] = None
        for r in sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["rate"]):
            if r["p99_ms"] > p99_target_ms:
                break
            held[mode] = r["rate"]
    return held


def run_suite(apps: Iterable[SuiteApp], questions: list[str], parts: Sequence[str] = ("single", "critical_path", "load"),
              repeats: int = 3, floor_questions: int = 4, ablation_apps: Sequence[str] = (),
              load_queries: int = 10, rate_factors: Sequence[float] = (0.5, 1.0, 2.0), rates: Sequence[float] = (),
              p99_target: float = 2.0) -> dict[str, Any]:
    """Run the chosen ``parts`` on every app; returns the report (JSON-ready), keyed by part then app label.

    Load rates are ``rates`` if given, else ``rate_factors`` times native's single-query rate (one
    query per its median latency; 3 s where single-query was not run). The p99 target of an app is
    ``p99_target`` times its native single-query median (same 3 s fallback).
    """
    report: dict[str, Any] = {}
    for app in apps:
        if "single" in parts:
            report.setdefault("single", {})[app.label] = single_query(app, questions, repeats)
        if "ablation" in parts and (app.name in ablation_apps or app.label in ablation_apps):
            report.setdefault("ablation", {})[app.label] = ablation(app, questions[:floor_questions], repeats)
        if "critical_path" in parts:
            report.setdefault("critical_path", {})[app.label] = critical_path_floor(app, questions[:floor_questions], repeats)
        if "load" in parts:
            native_s = report.get("single", {}).get(app.label, {}).get("ms", {}).get("native", 3000.0) / 1e3
            rows = load(app, questions, list(rates) or [f / native_s for f in rate_factors], load_queries)
            target = p99_target * native_s * 1e3
            report.setdefault("load", {})[app.label] = {"rows": rows, "p99_target_ms": target,
                                                        "highest_rate_under_target": highest_rate_under(rows, target)}
    return report


def _fmt_ratio(s: dict[str, float] | None) -> str:
    return f"{s['median']:.2f} ({s['q1']:.2f}-{s['q3']:.2f})" if s else "-"


def format_report(report: dict[str, Any]) -> str:
    """The report's tables, as text."""
    lines: list[str] = []
    if "single" in report:
        lines += ["single query (median of per-question medians; speed-up = baseline/teola per question, median (IQR);",
                  "hand-tuned '=' where the framework has no faster form than the app as written):",
                  f"{'app':<22} {'native ms':>10} {'hand-tuned':>10} {'teola ms':>9}  {'vs native':>17}  "
                  f"{'vs hand-tuned':>17}  same answers"]
        for label, r in report["single"].items():
            hand = f"{r['ms']['hand_tuned']:>10.0f}" if "hand_tuned" in r["ms"] else f"{'=':>10}"
            lines.append(f"{label:<22} {r['ms']['native']:>10.0f} {hand} {r['ms']['teola']:>9.0f}  "
                         f"{_fmt_ratio(r['speedup_over']['native']):>17}  "
                         f"{_fmt_ratio(r['speedup_over'].get('hand_tuned')):>17}  "
                         f"{r['same_answers']}/{r['questions']} vs {r['reference']}")
    for label, r in report.get("ablation", {}).items():
        lines += ["", f"ablation on {label} (latency relative to all passes; IQR; same answers as {r['reference']}):"]
        for mode, s in r["relative_to_all"].items():
            lines.append(f"  {mode:<18} {_fmt_ratio(s)}  {r['same_answers'][mode]}/{r['questions']}")
    if "critical_path" in report:
        lines += ["", "critical-path floor (isolated primitive latencies on the longest dependent chain):"]
        for label, r in report["critical_path"].items():
            lines.append(f"  {label:<22} floor {r['floor_ms']:>6.0f} ms; teola/floor {_fmt_ratio(r['teola_over_floor'])}; "
                         f"path {' -> '.join(r['per_question'][0]['path'])}")
    if "load" in report:
        lines += ["", "Poisson load (p99 target per app; 'holds' = highest measured rate within it):",
                  f"  {'app':<22} {'mode':<11} {'rate/s':>7} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9} {'done/s':>7}"]
        for label, r in report["load"].items():
            for row in r["rows"]:
                lines.append(f"  {label:<22} {row['mode']:<11} {row['rate']:>7.2f} {row['mean_ms']:>9.0f} "
                             f"{row['p50_ms']:>9.0f} {row['p99_ms']:>9.0f} {row['throughput_qps']:>7.2f}")
            held = ", ".join(f"{m} {'-' if v is None else f'{v:.2f}/s'}" for m, v in r["highest_rate_under_target"].items())
            lines.append(f"  {label:<22} p99 target {r['p99_target_ms']:.0f} ms holds: {held}")
    return "\n".join(lines)
