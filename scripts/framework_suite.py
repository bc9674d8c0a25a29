"""Run a framework's own test suite natively and under Teola's pytest plugin, and compare per test.

Run by scripts/langchain-core-suite and scripts/langgraph-suite, which set up the extracted sdist and the test
dependencies and pass what differs per suite: the test paths (--tests), the plugin (--plugin), the base pytest
args of every run (--base-args), the Teola runs (--teola-run LABEL=ARGS, each the plugin plus its own args; one
run `teola` without args by default), the environment (--env) and the report's title (--name). pytest runs in
subprocesses with the sdist root as working directory, so the sdist's pytest config and conftest.py files apply;
each run writes a junit XML under <suite>/../results/<label>.xml, parsed here.

Reports each run's counts and, for every Teola run, how many tests pass natively and under it, and the tests that
pass natively but not under it (with the first line of the failure), the ones listed in --exclude apart. Exits 1
if any such test is not excluded (in a run not named by --report-only), 2 if a pytest run produced no report (e.g.
the plugin failed to import).
Unknown arguments (e.g. `-k stream`, `-x`) are passed to every pytest run.

--json: `native` and each Teola run's label hold counts; the first Teola run's comparison sits at the top level
(`both_passed`, `regressions`, `excluded_regressions`, as langchain-core's report always had), each further run's
inside its own entry, with its `args`.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

# No LangSmith/LangChain keys or tracing from the developer's shell (upstream's test environment).
UNSET_ENV = ["LANGCHAIN_TRACING_V2", "LANGCHAIN_API_KEY", "LANGSMITH_API_KEY", "LANGSMITH_TRACING", "LANGCHAIN_PROJECT"]


def node_id(suite: Path, classname: str, name: str) -> str:
    """junit `classname` (dotted module[.Class...]) + `name` -> pytest node id (path.py[::Class]::name)."""
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if (suite / path).is_file():
            return "::".join([path, *parts[i:], name])
    return f"{classname}::{name}"


def parse_junit(suite: Path, xml: Path) -> dict[str, tuple[str, str]]:
    """node id -> (status, first line of the message); status: passed, failed, error, skipped, xfailed."""
    results = {}
    for case in ET.parse(xml).iter("testcase"):
        status, message = "passed", ""
        for tag in ("skipped", "failure", "error"):  # later tags win: an error in teardown after a failure is an error
            el = case.find(tag)
            if el is not None:
                status = {"failure": "failed"}.get(tag, tag)
                if tag == "skipped" and el.get("type") == "pytest.xfail":
                    status = "xfailed"
                message = ((el.get("message") or el.text or "").strip().splitlines() or [""])[0]
        results[node_id(suite, case.get("classname", ""), case.get("name", ""))] = (status, message)
    return results


def run_pytest(args: argparse.Namespace, suite: Path, label: str, run_args: list[str], extra: list[str]) -> tuple[dict, float]:
    xml = suite.parent / "results" / f"{label}.xml"
    xml.parent.mkdir(exist_ok=True)
    xml.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", *args.tests, "-q", *shlex.split(args.base_args), "-p", "no:cacheprovider",
           *run_args, f"--junitxml={xml.resolve()}", *extra]
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
    env.update(kv.split("=", 1) for kv in args.env)
    print(f"\n=== {label} run (cwd {suite}): {' '.join(cmd[1:])}", flush=True)
    start = time.monotonic()
    rc = subprocess.call(cmd, cwd=suite, env=env)
    elapsed = time.monotonic() - start
    if not xml.is_file():
        sys.exit(f"{label} run: pytest exited {rc} without a junit report (see its output above)")
    print(f"=== {label} run: pytest exit code {rc}, {elapsed:.1f}s", flush=True)
    return parse_junit(suite, xml), elapsed


def counts(results: dict) -> dict[str, int]:
    keys = ("passed", "failed", "error", "skipped", "xfailed")
    return {"total": len(results), **{k: sum(s == k for s, _ in results.values()) for k in keys}}


def read_exclusions(path: str | None) -> dict[str, tuple[str, set[str]]]:
    """node id -> (reason, labels of the Teola runs it applies to, empty for all), from lines
    `nodeid [@label ...]  # reason` (comment-only and blank lines ignored)."""
    excluded = {}
    for line in Path(path).read_text().splitlines() if path else []:
        test, _, reason = line.partition("#")
        test, labels = test.strip(), set()
        while (head := test.rpartition(" "))[0] and head[2].startswith("@"):  # a node id may hold spaces
            test, labels = head[0].rstrip(), labels | {head[2][1:]}
        if test:
            excluded[test] = (reason.strip(), labels)
    return excluded


def compare(native: dict, teola: dict, label: str, excluded: dict) -> dict:
    """Passed natively and under the Teola run `label`; the tests lost under it, excluded ones apart."""
    passed_native = [t for t, (s, _) in native.items() if s == "passed"]
    lost = [{"test": t, "teola": teola.get(t, ("missing", ""))[0], "message": teola.get(t, ("", ""))[1]}
            for t in passed_native if teola.get(t, ("missing",))[0] != "passed"]

    def applies(test: str) -> bool:
        return test in excluded and (not excluded[test][1] or label in excluded[test][1])

    return {
        "both_passed": sum(teola.get(t, ("missing",))[0] == "passed" for t in passed_native),
        "regressions": [r for r in lost if not applies(r["test"])],
        "excluded_regressions": [{**r, "reason": excluded[r["test"]][0]} for r in lost if applies(r["test"])],
    }


def parse_run(spec: str) -> tuple[str, list[str]]:
    label, _, run_args = spec.partition("=")
    if not label or label == "native" or "/" in label:
        raise argparse.ArgumentTypeError(f"--teola-run {spec!r}: want LABEL=ARGS, LABEL not 'native'")
    return label, shlex.split(run_args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, type=Path, help="the extracted sdist (pytest's working directory)")
    parser.add_argument("--tests", action="append", required=True, help="a test path, relative to --suite (repeatable)")
    parser.add_argument("--plugin", required=True, help="the pytest plugin module of the Teola runs")
    parser.add_argument("--teola-run", action="append", type=parse_run, default=[], metavar="LABEL=ARGS",
                        help="a Teola run: the plugin plus ARGS (repeatable; default: `teola=`)")
    parser.add_argument("--base-args", default="", help="pytest args of every run, one shell-quoted string")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment of every run")
    parser.add_argument("--name", default="framework", help="the suite's name in the report")
    parser.add_argument("--exclude", help="file of node ids (`nodeid [@label ...]  # reason`) reported apart")
    parser.add_argument("--json", type=Path, help="also write the counts and lists here")
    parser.add_argument("--native-only", action="store_true", help="skip the Teola runs")
    parser.add_argument("--report-only", action="append", default=[], metavar="LABEL",
                        help="a Teola run whose regressions are reported but do not fail the check (a stress run)")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    suite = args.suite.resolve()
    excluded = read_exclusions(args.exclude)
    teola_runs = [] if args.native_only else args.teola_run or [("teola", [])]

    native, native_s = run_pytest(args, suite, "native", [], extra)
    where = str(suite / args.tests[0]) if len(args.tests) == 1 else f"{suite}: {' '.join(args.tests)}"
    report = {"suite": where, "pytest_args": extra, "native": {**counts(native), "seconds": round(native_s, 1)}}
    comparisons = {}
    for i, (label, run_args) in enumerate(teola_runs):
        teola, teola_s = run_pytest(args, suite, label, ["-p", args.plugin, *run_args], extra)
        comparisons[label] = compare(native, teola, label, excluded)
        report[label] = {**counts(teola), "seconds": round(teola_s, 1)}
        if i == 0:
            report.update(comparisons[label])
        else:
            report[label].update(args=run_args, **comparisons[label])
    report["excluded_unknown"] = [t for t in excluded if t not in native]  # stale ids, or deselected by -k

    print(f"\n=== {args.name} suite:", report["suite"])
    for label in ["native", *(label for label, _ in teola_runs)]:
        c = report[label]
        print(f"{label:>7}: {c['passed']} passed, {c['failed']} failed, {c['error']} errored, "
              f"{c['skipped']} skipped, {c['xfailed']} xfailed (of {c['total']}; {c['seconds']}s)")
    for label, run_args in teola_runs:
        r = comparisons[label]
        under = "Teola" if label == "teola" and not run_args else f"Teola [{label}: -p {args.plugin} {' '.join(run_args)}]"
        print(f"passed natively and under {under}: {r['both_passed']} of {report['native']['passed']}")
        print(f"passed natively, not under {under} (excluded apart): {len(r['regressions'])}")
        for x in r["regressions"]:
            print(f"  {x['test']}  [{x['teola']}] {x['message']}")
        listed = sum(not labels or label in labels for _, labels in excluded.values())
        print(f"excluded (executor cannot be expected to preserve): {len(r['excluded_regressions'])} "
              f"of them fail under {under}, {listed} listed")
        for x in r["excluded_regressions"]:
            print(f"  {x['test']}  [{x['teola']}] {x['message']}  -- excluded: {x['reason']}")
    if report["excluded_unknown"]:
        print(f"excluded ids not in this run: {', '.join(report['excluded_unknown'])}")
    report["report_only"] = args.report_only
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written: {args.json}")
    gating = {label: r for label, r in comparisons.items() if label not in args.report_only}
    for label in args.report_only:
        print(f"{label}: reported only, its regressions do not fail the check")
    return 1 if any(r["regressions"] for r in gating.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
