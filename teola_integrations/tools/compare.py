"""Native vs Teola on the same app and engines: interleaved runs, latencies, answer equality."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from tqdm import tqdm


@dataclass
class QuestionResult:
    """Latencies (seconds) of one question over the repeats, and whether the answers agreed."""

    question: str
    native: list[float] = field(default_factory=list)
    teola: list[float] = field(default_factory=list)
    same_text: bool = True
    same_sources: bool = True
    answer: str = ""

    @property
    def ratio(self) -> float:
        """Median native latency over median Teola latency (above 1: Teola is faster)."""
        return statistics.median(self.native) / statistics.median(self.teola)


def _timed(query: Callable[[str], Any], question: str) -> tuple[float, Any]:
    start = time.perf_counter()
    response = query(question)
    return time.perf_counter() - start, response


def _sources(response: Any) -> list[str]:
    """The content hashes of a LlamaIndex response's source nodes (a plain answer, as LangChain's, has
    none): a retrieved node's content is its id's, and a node built per query (a sub-question's
    answer) gets a new id in every run."""
    return [n.node.hash for n in getattr(response, "source_nodes", ())]


def interleave(modes: dict[str, Callable[[str], Any]], questions: list[str], repeats: int = 3,
               desc: str = "interleaved") -> list[dict[str, Any]]:
    """Run every question ``repeats`` times in every mode, rotating which mode goes first, in one process.

    The first mode is the reference: each question is asked of it once, unmeasured, before the
    repeats. vLLM computes a prompt whose prefix is already cached along another path than a cold
    one, and at a near-tie greedy decoding can then pick another token (a native cold run and a
    native warm run can differ); warming first makes every measured run see the same cache state.
    Returns per question: ``latency`` (mode -> seconds per repeat), ``same_text`` and
    ``same_sources`` (mode -> equal to the reference in every repeat), and the reference's ``answer``.
    """
    names = list(modes)
    rows = []
    with tqdm(total=len(questions) * (repeats * len(names) + 1), desc=desc, unit="query") as bar:
        for question in questions:
            modes[names[0]](question)
            bar.update()
            row = {"question": question, "latency": {n: [] for n in names},
                   "same_text": dict.fromkeys(names, True), "same_sources": dict.fromkeys(names, True)}
            for repeat in range(repeats):
                responses = {}
                for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                    latency, responses[name] = _timed(modes[name], question)
                    row["latency"][name].append(latency)
                    bar.update()
                reference = responses[names[0]]
                for name in names:
                    row["same_text"][name] &= str(responses[name]) == str(reference)
                    row["same_sources"][name] &= _sources(responses[name]) == _sources(reference)
                row["answer"] = str(reference)
            rows.append(row)
    return rows


def compare(native: Callable[[str], Any], teola: Callable[[str], Any], questions: list[str],
            repeats: int = 3) -> list[QuestionResult]:
    """Native and Teola on the same questions, interleaved (see ``interleave``)."""
    rows = interleave({"native": native, "teola": teola}, questions, repeats, desc="native vs teola")
    return [QuestionResult(row["question"], row["latency"]["native"], row["latency"]["teola"],
                           row["same_text"]["teola"], row["same_sources"]["teola"], row["answer"]) for row in rows]


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, 25th percentile, 75th percentile)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q2, q1, q3


def format_table(results: list[QuestionResult]) -> str:
    """A per-question table and a summary line."""
    lines = [f"{'question':<52} {'native ms':>10} {'teola ms':>10} {'ratio':>6}  same answer / sources"]
    for r in results:
        lines.append(f"{r.question[:52]:<52} {statistics.median(r.native) * 1e3:>10.0f} "
                     f"{statistics.median(r.teola) * 1e3:>10.0f} {r.ratio:>6.2f}  {r.same_text!s:<5} / {r.same_sources}")
    lines.append(summary_line(results))
    return "\n".join(lines)


def summary_line(results: list[QuestionResult]) -> str:
    """One line: the median native/Teola ratio with its IQR, and how many answers and sources were equal."""
    ratio, low, high = spread([r.ratio for r in results])
    native = statistics.median(statistics.median(r.native) for r in results)
    teola = statistics.median(statistics.median(r.teola) for r in results)
    return (f"median ratio native/teola {ratio:.3f} (IQR {low:.3f}-{high:.3f}; {native * 1e3:.0f} vs {teola * 1e3:.0f} ms) "
            f"over {len(results)} questions; answers equal {sum(r.same_text for r in results)}/{len(results)}, "
            f"sources equal {sum(r.same_sources for r in results)}/{len(results)}")


def as_json(results: list[QuestionResult]) -> list[dict[str, Any]]:
    """The results as JSON-ready dicts."""
    return [{**asdict(r), "ratio": r.ratio} for r in results]
