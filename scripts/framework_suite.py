"""Run langchain-core's own runnables unit tests natively and with Teola's executor on, and compare per test.

Run by scripts/langchain-core-suite (which sets up the extracted sdist and the test dependencies). pytest runs in
subprocesses with the sdist root as working directory, so the sdist's pyproject [tool.pytest.ini_options] and
conftest.py files apply; each run writes a junit XML under <suite>/../results/, parsed here. The Teola run adds
`-p teola_integrations.langchain.pytest_plugin`.

Reports native and Teola counts, how many tests pass under both, and the tests that pass natively but not under
Teola (with the first line of the failure), the ones listed in --exclude apart. Exits 1 if any such test is not
excluded, 2 if a pytest run produced no report (e.g. the plugin failed to import).
Unknown arguments (e.g. `-k stream`, `-x`) are passed to both pytest runs.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

PLUGIN = "teola_integrations.langchain.pytest_plugin"
TESTS = "tests/unit_tests/runnables"
# The options of upstream's `make test` that are not in its pytest config: no network (pytest-socket) ...
BASE_ARGS = ["-q", "--disable-socket", "--allow-unix-socket", "-p", "no:cacheprovider"]
# ... and its environment: no LangSmith/LangChain keys or tracing from the developer's shell.
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


def run_pytest(suite: Path, label: str, extra: list[str], plugin: bool) -> tuple[dict, float]:
    xml = suite.parent / "results" / f"{label}.xml"
    xml.parent.mkdir(exist_ok=True)
    xml.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", TESTS, *BASE_ARGS, *(["-p", PLUGIN] if plugin else []),
           f"--junitxml={xml.resolve()}", *extra]
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
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


def read_exclusions(path: str | None) -> dict[str, str]:
    """node id -> reason, from lines `nodeid  # reason` (comment-only and blank lines ignored)."""
    excluded = {}
    for line in Path(path).read_text().splitlines() if path else []:
        test, _, reason = line.partition("#")
        if test.strip():
            excluded[test.strip()] = reason.strip()
    return excluded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, type=Path, help="the extracted langchain-core sdist")
    parser.add_argument("--exclude", help="file of node ids (`nodeid  # reason`) reported apart")
    parser.add_argument("--json", type=Path, help="also write the counts and lists here")
    parser.add_argument("--native-only", action="store_true", help="skip the Teola run")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    suite = args.suite.resolve()
    excluded = read_exclusions(args.exclude)

    native, native_s = run_pytest(suite, "native", extra, plugin=False)
    report = {"suite": str(suite / TESTS), "pytest_args": extra,
              "native": {**counts(native), "seconds": round(native_s, 1)}}
    if not args.native_only:
        teola, teola_s = run_pytest(suite, "teola", extra, plugin=True)
        report["teola"] = {**counts(teola), "seconds": round(teola_s, 1)}
        passed_native = [t for t, (s, _) in native.items() if s == "passed"]
        report["both_passed"] = sum(teola.get(t, ("missing",))[0] == "passed" for t in passed_native)
        lost = [{"test": t, "teola": teola.get(t, ("missing", ""))[0], "message": teola.get(t, ("", ""))[1]}
                for t in passed_native if teola.get(t, ("missing",))[0] != "passed"]
        report["regressions"] = [r for r in lost if r["test"] not in excluded]
        report["excluded_regressions"] = [{**r, "reason": excluded[r["test"]]} for r in lost if r["test"] in excluded]
    report["excluded_unknown"] = [t for t in excluded if t not in native]  # stale ids, or deselected by -k

    print("\n=== langchain-core runnables suite:", report["suite"])
    for label in ("native", "teola"):
        if label in report:
            c = report[label]
            print(f"{label:>7}: {c['passed']} passed, {c['failed']} failed, {c['error']} errored, "
                  f"{c['skipped']} skipped, {c['xfailed']} xfailed (of {c['total']}; {c['seconds']}s)")
    if "teola" in report:
        print(f"passed natively and under Teola: {report['both_passed']} of {report['native']['passed']}")
        print(f"passed natively, not under Teola (excluded apart): {len(report['regressions'])}")
        for r in report["regressions"]:
            print(f"  {r['test']}  [{r['teola']}] {r['message']}")
        print(f"excluded (executor cannot be expected to preserve): {len(report['excluded_regressions'])} "
              f"of them fail under Teola, {len(excluded)} listed")
        for r in report["excluded_regressions"]:
            print(f"  {r['test']}  [{r['teola']}] {r['message']}  -- excluded: {r['reason']}")
    if report["excluded_unknown"]:
        print(f"excluded ids not in this run: {', '.join(report['excluded_unknown'])}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written: {args.json}")
    return 1 if report.get("regressions") else 0


if __name__ == "__main__":
    sys.exit(main())
