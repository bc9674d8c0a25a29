"""The replica-scaling report: its table and figure, and the cores-busy measure."""

import time

from teola_integrations.tools.scaling import format_scaling, llm_placement, with_cpu_busy
from teola_integrations.tools.views import scaling_figure


def _row(replicas, rate, done):
    return {"replicas": replicas, "rate": rate, "p50_ms": 900.0, "p99_ms": 1500.0, "throughput_qps": done,
            "cpu_busy": 0.5, "requests_per_replica": [3] * replicas, "latencies_ms": [900.0, 1500.0]}


REPORT = {"app": "langchain/rag", "pin_cores": True, "queries_per_rate": 2,
          "rows": [_row(1, 1.0, 0.8), _row(1, 2.0, 1.0), _row(2, 1.0, 0.9), _row(2, 2.0, 1.6)]}


def test_the_table_gives_each_rates_throughput_relative_to_the_fewest_replicas():
    table = format_scaling(REPORT)
    assert "| 2 | 2.00 | 900 | 1500 | 1.60 | 1.60 | 50% | 3 / 3 |" in table
    assert "| 1 | 1.00 | 900 | 1500 | 0.80 | 1.00 | 50% | 3 |" in table
    assert "each replica on a core of its own" in table


def test_the_figure_has_a_line_per_replica_count():
    done, latency = scaling_figure(REPORT).axes
    assert [line.get_label() for line in done.lines][:2] == ["1 LLM replica", "2 LLM replicas"]
    assert list(done.lines[1].get_ydata()) == [0.9, 1.6]
    assert len(latency.lines) == 4  # p50 and p99 per replica count


def test_cores_busy_is_a_fraction_and_sees_a_busy_loop():
    def spin():
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass
        return {"rate": 1.0}

    row = with_cpu_busy(spin)
    assert row["rate"] == 1.0 and 0.0 < row["cpu_busy"] <= 1.0


def test_pinned_replicas_bind_vllm_to_their_own_core():
    assert llm_placement(2, pin_cores=True).env_for(1)["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in llm_placement(1, pin_cores=False).env_vars
