"""The suite's logic on plain-Python pipelines (no engines): modes, ratios, load, rates held, report."""

import json
import time

from teola_integrations.tools.benchmark import SuiteApp, format_report, highest_rate_under, run_suite
from teola_integrations.tools.views import latency_bars_figure, latency_cdf_figure


class Pipeline:
    """A pipeline that answers after ``delay`` seconds."""

    def __init__(self, delay: float, answer: str = "42") -> None:
        self.delay, self.answer = delay, answer

    def __call__(self, question: str) -> str:
        time.sleep(self.delay)
        return f"{self.answer}: {question}"


def _app(hand_tuned: Pipeline | None, teola_answer: str = "42") -> SuiteApp:
    return SuiteApp("framework", "app", Pipeline(0.04), hand_tuned, lambda p, q: p(q),
                    lambda native, passes=None: Pipeline(0.01, teola_answer))


def test_single_query_measures_every_mode_and_the_speedup_over_each_baseline() -> None:
    report = run_suite([_app(Pipeline(0.02))], ["q1", "q2"], parts=("single",), repeats=2)
    r = report["single"]["framework/app"]
    assert set(r["ms"]) == {"native", "hand_tuned", "teola"}
    assert r["ms"]["native"] > r["ms"]["hand_tuned"] > r["ms"]["teola"]
    assert r["speedup_over"]["native"]["median"] > r["speedup_over"]["hand_tuned"]["median"] > 1
    assert r["same_answers"] == 2 and r["questions"] == 2
    assert json.loads(json.dumps(report, default=str))  # the report is JSON


def test_an_app_without_a_hand_tuned_form_is_compared_with_native_only_and_a_wrong_answer_is_counted() -> None:
    r = run_suite([_app(None, teola_answer="41")], ["q1"], parts=("single",), repeats=1)["single"]["framework/app"]
    assert set(r["ms"]) == {"native", "teola"} and set(r["speedup_over"]) == {"native"}
    assert r["same_answers"] == 0
    assert "=" in format_report({"single": {"framework/app": r}})


def test_load_runs_every_mode_at_each_rate_and_finds_the_rate_held_under_the_target() -> None:
    report = run_suite([_app(None)], ["q"], parts=("load",), load_queries=4, rates=(5.0, 20.0), p99_target=2.0)
    load = report["load"]["framework/app"]
    assert [(r["mode"], r["rate"]) for r in load["rows"]] == [("native", 5.0), ("teola", 5.0), ("native", 20.0),
                                                               ("teola", 20.0)]
    assert all(len(r["latencies_ms"]) == 4 and r["p99_ms"] >= r["p50_ms"] > 0 for r in load["rows"])
    assert load["p99_target_ms"] == 6000.0  # 2x the 3 s fallback: single-query was not run
    assert load["highest_rate_under_target"] == {"native": 20.0, "teola": 20.0}
    assert "holds: native 20.00/s, teola 20.00/s" in format_report(report)


def test_the_rate_held_is_the_highest_before_the_first_miss() -> None:
    rows = [{"mode": "native", "rate": 1.0, "p99_ms": 90}, {"mode": "native", "rate": 2.0, "p99_ms": 150},
            {"mode": "native", "rate": 4.0, "p99_ms": 80}, {"mode": "teola", "rate": 1.0, "p99_ms": 120}]
    assert highest_rate_under(rows, 100.0) == {"native": 1.0, "teola": None}


def test_the_latency_plots_draw_a_bar_per_app_and_mode_and_a_curve_per_mode_and_rate(tmp_path) -> None:
    report = run_suite([_app(Pipeline(0.02))], ["q1", "q2"], parts=("single", "load"), repeats=1, load_queries=2,
                       rates=(10.0,))
    bars = latency_bars_figure(report["single"])
    assert len(bars.axes[0].patches) == 3
    cdf = latency_cdf_figure(report["load"])
    assert len(cdf.axes[0].lines) == 3 + 1  # three modes at one rate, and the p99 target
    bars.savefig(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").read_bytes()[:4] == b"\x89PNG"
