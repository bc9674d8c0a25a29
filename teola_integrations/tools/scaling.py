"""Throughput of one optimized app as its LLM engine gets more replicas, on the Ray backend.

For each replica count the process's runtime is configured afresh with a ``RayBackend`` (a local
Ray instance), the app is built and optimized on it, and the same Poisson arrivals (same seed) are
sent at each rate. With ``pin_cores`` each CPU replica gets a core of its own (replica i binds
vLLM's threads to core i), so one replica stands for one machine's worth of engine and two for two.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import psutil
from tqdm import tqdm

from teola.runtime.backends.ray_backend import Placement, RayBackend
from teola.runtime.runtime import configure_runtime, get_runtime
from teola_integrations.tools.benchmark import poisson_load
from teola_integrations.tools.suite_apps import suite_apps


def llm_placement(replicas: int, pin_cores: bool) -> Placement:
    """One CPU per LLM replica; with ``pin_cores``, replica i's vLLM threads bound to core i."""
    return Placement(replicas=replicas, num_cpus=1,
                     env_vars={"VLLM_CPU_OMP_THREADS_BIND": "{replica}"} if pin_cores else {})


def with_cpu_busy(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s row, with how busy the machine's cores were meanwhile (0-1, all cores together):
    near 1 the machine, not the engine, is what limits throughput."""
    before = psutil.cpu_times()
    row = run()
    after = psutil.cpu_times()
    spent = {field: getattr(after, field) - getattr(before, field) for field in after._fields}
    total = sum(spent.values())
    return {**row, "cpu_busy": 1 - (spent["idle"] + spent.get("iowait", 0.0)) / total if total else 0.0}


def replica_scaling(framework: str, app_name: str, replica_counts: Sequence[int], rates: Sequence[float], count: int,
                    questions: Sequence[str], pin_cores: bool = True, top_k: int = 3,
                    max_tokens: int = 64) -> dict[str, Any]:
    """Teola's form of the app under load at each rate, for each LLM replica count: p50, p99 and
    throughput per row, each query's latency, how busy the cores were and the LLM requests each replica
    took. The runtime is left on the last configuration."""
    rows = []
    for replicas in tqdm(replica_counts, desc="replica counts", unit="config"):
        configure_runtime(backend=RayBackend(llm=llm_placement(replicas, pin_cores), num_cpus=replicas + 1,
                                             log_to_driver=False))
        with suite_apps({framework: [app_name]}, top_k, max_tokens) as [app]:
            ask = app.modes()["teola"]
            # warm every replica (its first batches run slow on CPU): all questions at once, so they spread
            with ThreadPoolExecutor(max_workers=len(questions)) as pool:
                list(pool.map(ask, questions))
            llm = get_runtime().llm().engine
            for rate in rates:
                sent = list(llm.requests_per_replica)
                row = with_cpu_busy(lambda: poisson_load(ask, questions, rate, count, desc=f"{replicas} replica(s) @ {rate:.2f}/s"))
                row["requests_per_replica"] = [now - then for now, then in zip(llm.requests_per_replica, sent)]
                rows.append({"replicas": replicas, **row})
    return {"app": f"{framework}/{app_name}", "pin_cores": pin_cores, "queries_per_rate": count, "rows": rows}


def format_scaling(report: dict[str, Any]) -> str:
    """The rows as a table, with each rate's throughput relative to one replica's."""
    base = {row["rate"]: row["throughput_qps"] for row in report["rows"] if row["replicas"] == min(
        r["replicas"] for r in report["rows"])}
    lines = [f"{report['app']} on the Ray backend, {report['queries_per_rate']} queries per rate"
             f"{', each replica on a core of its own' if report['pin_cores'] else ''}",
             "| LLM replicas | rate/s | p50 ms | p99 ms | done/s | done/s vs fewest replicas | cores busy | "
             "LLM requests per replica |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['replicas']} | {row['rate']:.2f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | "
                     f"{row['throughput_qps']:.2f} | {row['throughput_qps'] / base[row['rate']]:.2f} | "
                     f"{row['cpu_busy']:.0%} | {' / '.join(map(str, row['requests_per_replica']))} |")
    return "\n".join(lines)
