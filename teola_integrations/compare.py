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
    return [n.node.node_id for n in response.source_nodes]


def compare(native: Callable[[str], Any], teola: Callable[[str], Any], questions: list[str],
            repeats: int = 3) -> list[QuestionResult]:
    """Run every question ``repeats`` times on both, alternating which goes first, in one process.

    Each question is asked once, unmeasured, before its repeats: vLLM computes a prompt whose
    prefix is already cached along another path than a cold one, and at a near-tie greedy
    decoding can then pick another token (a native cold run and a native warm run can differ).
    Warming first makes every measured run, native or Teola, see the same cache state.
    """
    results = []
    with tqdm(total=len(questions) * (repeats * 2 + 1), desc="native vs teola", unit="query") as bar:
        for question in questions:
            native(question)
            bar.update()
            result = QuestionResult(question)
            for repeat in range(repeats):
                order = [("native", native), ("teola", teola)]
                responses = {}
                for name, query in order if repeat % 2 == 0 else reversed(order):
                    latency, responses[name] = _timed(query, question)
                    getattr(result, name).append(latency)
                    bar.update()
                result.same_text &= str(responses["native"]) == str(responses["teola"])
                result.same_sources &= _sources(responses["native"]) == _sources(responses["teola"])
                result.answer = str(responses["teola"])
            results.append(result)
    return results


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
    ratio, low, high = spread([r.ratio for r in results])
    lines.append(f"median ratio native/teola {ratio:.3f} (IQR {low:.3f}-{high:.3f}) over {len(results)} questions; "
                 f"answers equal {sum(r.same_text for r in results)}/{len(results)}, "
                 f"sources equal {sum(r.same_sources for r in results)}/{len(results)}")
    return "\n".join(lines)


def as_json(results: list[QuestionResult]) -> list[dict[str, Any]]:
    """The results as JSON-ready dicts."""
    return [{**asdict(r), "ratio": r.ratio} for r in results]
