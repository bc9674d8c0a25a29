"""Pictures of what Teola did: the primitive graph after each pass, one query's timeline, and the
benchmark's latencies (bars with spread per mode, latency CDFs under load).

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state, no backend choice): save
them with ``fig.savefig(path)`` or show them in a notebook with ``display(fig)``. Graphs are drawn
by networkx, laid out left to right by dependency level; timelines come from the runtime's own
trace (``QueryTrace``), one row per engine.
"""

from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

import networkx as nx
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from teola.optimizer.ir import Graph, Op
from teola.runtime.graph_scheduler import QueryTrace
from teola_integrations.tools.compare import spread

OP_COLORS = {Op.EMBED.value: "#4e79a7", Op.SEARCH.value: "#59a14f", Op.PROMPT.value: "#bab0ac",
             Op.PREFILL.value: "#f28e2b", Op.DECODE.value: "#e15759", Op.PARSE.value: "#b07aa1",
             Op.CALL.value: "#9c9c9c", Op.FUSE.value: "#76b7b2"}
OTHER_COLOR = "#d4d4d4"
MODE_COLORS = {"native": "#9c9c9c", "hand_tuned": "#4e79a7", "teola-arrival": "#f28e2b", "teola": "#e15759"}
NODE_SIZE = 260


def _color(op: str) -> str:
    return OP_COLORS.get(op, OTHER_COLOR)


def _legend(fig: Figure, ops: set[str]) -> None:
    handles = [Patch(color=_color(op), label=op) for op in OP_COLORS if op in ops]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)


def draw_graph(graph: Graph, ax, title: str) -> None:
    """Draw ``graph`` on ``ax``: nodes coloured by primitive, columns by dependency level, order-only
    edges dashed; the title gives the node count and the longest dependent chain."""
    dag = graph.to_networkx()
    levels = list(nx.topological_generations(dag))
    for level, names in enumerate(levels):
        for name in names:
            dag.nodes[name]["level"] = level
    pos = nx.multipartite_layout(dag, subset_key="level")
    order_edges = [(u, v) for u, v, kind in dag.edges(data="kind") if kind == "order"]
    data_edges = [(u, v) for u, v, kind in dag.edges(data="kind") if kind != "order"]
    nx.draw_networkx_nodes(dag, pos, ax=ax, node_size=NODE_SIZE, node_color=[_color(dag.nodes[n]["op"]) for n in dag])
    nx.draw_networkx_edges(dag, pos, ax=ax, edgelist=data_edges, node_size=NODE_SIZE, arrowsize=8, width=0.8)
    nx.draw_networkx_edges(dag, pos, ax=ax, edgelist=order_edges, node_size=NODE_SIZE, arrowsize=8, width=0.8, style="dashed")
    nx.draw_networkx_labels(dag, pos, ax=ax, font_size=5, labels={n: n.rsplit(".", 1)[-1][:14] for n in dag})
    ax.set_title(f"{title}\n{len(graph)} primitives, {len(levels)} levels", fontsize=9)
    ax.axis("off")


def stages_figure(stages: Sequence[tuple[str, Graph]]) -> Figure:
    """The primitive graph after each pass, side by side (``plan_stages`` gives the stages)."""
    fig = Figure(figsize=(4.5 * len(stages), 5), layout="constrained")
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    for ax, (name, graph) in zip(axes, stages):
        draw_graph(graph, ax, name)
    _legend(fig, {n.op.value for _, g in stages for n in g})
    return fig


def timeline_figure(traces: Mapping[str, QueryTrace]) -> Figure:
    """One query's primitives over time, one panel per run (e.g. native order vs Teola), a row per
    engine; the x axes are shared so the panels compare directly."""
    fig = Figure(figsize=(10, 1.2 + 1.6 * len(traces)), layout="constrained")
    axes = fig.subplots(len(traces), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (name, trace) in zip(axes, traces.items()):
        engines = sorted({span.engine for span in trace.spans})
        for span in trace.spans:
            row = engines.index(span.engine)
            ax.broken_barh([(span.start, max(span.end - span.start, 1e-4))], (row - 0.4, 0.8),
                           facecolors=_color(span.op), edgecolor="black", linewidth=0.3)
        ax.set_yticks(range(len(engines)), engines, fontsize=7)
        ax.set_title(f"{name}: {trace.total * 1e3:.0f} ms", fontsize=9, loc="left")
    axes[-1].set_xlabel("seconds since the query started")
    _legend(fig, {span.op for trace in traces.values() for span in trace.spans})
    return fig


def latency_bars_figure(single: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Single-query latency per app and mode (``run_suite``'s ``single`` part): bars at the median
    of per-question medians, whiskers from the 25th to the 75th percentile of those medians."""
    fig = Figure(figsize=(1.2 + 1.5 * len(single), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(MODE_COLORS)
    for i, mode in enumerate(MODE_COLORS):
        xs, heights, low, high = [], [], [], []
        for x, result in enumerate(single.values()):
            if mode not in result["ms"]:
                continue
            medians = [1e3 * statistics.median(row["latency"][mode]) for row in result["rows"]]
            _, q1, q3 = spread(medians)
            xs.append(x + (i - 1) * width)
            heights.append(result["ms"][mode])
            low.append(result["ms"][mode] - q1)
            high.append(q3 - result["ms"][mode])
        if not xs:
            continue
        ax.bar(xs, heights, width, yerr=[low, high], capsize=3, color=MODE_COLORS[mode], label=mode.replace("_", "-"))
    ax.set_xticks(range(len(single)), list(single), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("latency, ms (median, IQR)")
    ax.legend(fontsize=8, frameon=False)
    return fig


def latency_cdf_figure(load: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Under Poisson load (``run_suite``'s ``load`` part): one panel per app, the CDF of each mode's
    latencies at each rate (darker: higher rate), and the app's p99 target (if it has one) as a dashed line."""
    fig = Figure(figsize=(4 * len(load), 3.4), layout="constrained")
    axes = fig.subplots(1, len(load), squeeze=False)[0]
    for ax, (label, result) in zip(axes, load.items()):
        rates = sorted({row["rate"] for row in result["rows"]})
        for row in result["rows"]:
            latencies = sorted(row["latencies_ms"])
            shade = 0.35 + 0.65 * (rates.index(row["rate"]) + 1) / len(rates)
            ax.step(latencies, [(k + 1) / len(latencies) for k in range(len(latencies))], where="post",
                    color=MODE_COLORS[row["mode"]], alpha=shade, label=f"{row['mode'].replace('_', '-')} @ {row['rate']:.2f}/s")
        if "p99_target_ms" in result:
            ax.axvline(result["p99_target_ms"], color="black", linestyle="dashed", linewidth=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("latency, ms")
        ax.legend(fontsize=6, frameon=False, loc="lower right")
    axes[0].set_ylabel("fraction of queries")
    return fig


def scaling_figure(report: Mapping[str, Any]) -> Figure:
    """``teola scale``'s rows: throughput and p50/p99 latency against the arrival rate, one line per
    LLM replica count."""
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    done, latency = fig.subplots(1, 2)
    counts = sorted({row["replicas"] for row in report["rows"]})
    for shade, replicas in enumerate(counts, start=1):
        rows = sorted((row for row in report["rows"] if row["replicas"] == replicas), key=lambda row: row["rate"])
        rates = [row["rate"] for row in rows]
        color = (0.1, 0.3 + 0.6 * shade / len(counts), 0.5)
        label = f"{replicas} LLM replica{'s' if replicas > 1 else ''}"
        done.plot(rates, [row["throughput_qps"] for row in rows], marker="o", color=color, label=label)
        latency.plot(rates, [row["p50_ms"] for row in rows], marker="o", color=color, label=f"{label}, p50")
        latency.plot(rates, [row["p99_ms"] for row in rows], marker="^", linestyle="dashed", color=color, label=f"{label}, p99")
    top = max(row["rate"] for row in report["rows"])
    done.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle="dotted", label="answered as fast as they arrive")
    done.set_xlabel("arrival rate, queries/s")
    done.set_ylabel("answered, queries/s")
    latency.set_xlabel("arrival rate, queries/s")
    latency.set_ylabel("latency, ms")
    done.legend(fontsize=7, frameon=False)
    latency.legend(fontsize=7, frameon=False)
    fig.suptitle(report["app"], fontsize=9)
    return fig
