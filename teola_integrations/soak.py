"""A soak: thousands of queries at a rate above what the engines sustain, with the real engines.

Queries arrive on one event loop (Poisson, seeded) and are asked through the optimized app's async
API, so thousands can be in the air without a thread each. The runtime's admission limits decide
who runs, who waits and who is refused. The report counts what was sent, answered, refused and
failed by error type, and what was lost (sent, but neither answered nor failed: must be 0); it
compares every answer with the app's answer to that question asked alone, and samples the memory
of this process and its children (vLLM's engine core) once a second.

Greedy answers decoded in a batch can drift from the same question's answer decoded alone (vLLM on
CPU is not batch-invariant); an answer that drifted still starts as its own question's answer does.
So for each differing answer the soak also checks that it shares a longer start with its own
question's answer alone than with any other question's: one that does not is counted as
``closer_to_another_question`` (a mixed-up result would be).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from typing import Any, Awaitable, Callable, Sequence

import psutil
from tqdm import tqdm

AskAsync = Callable[[str], Awaitable[str]]


def _rss_mib() -> tuple[float, float]:
    """Resident memory of this process, and of its descendants together (vLLM's engine core), MiB."""
    me = psutil.Process()
    children = 0
    for child in me.children(recursive=True):
        try:
            children += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return me.memory_info().rss / 2**20, children / 2**20


def _closer_to_another(answer: str, question: str, expected: dict[str, str]) -> bool:
    """Whether ``answer`` starts more like another question's answer alone than like its own."""
    own = len(os.path.commonprefix([answer, expected[question]]))
    return any(len(os.path.commonprefix([answer, other])) >= own
               for asked, other in expected.items() if asked != question and other != expected[question])


async def _soak(ask: AskAsync, questions: Sequence[str], expected: dict[str, str], queries: int, rate: float,
                seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    differing: list[dict[str, str]] = []
    mixed = 0
    memory: list[tuple[float, float, float]] = []
    bar = tqdm(total=queries, desc=f"soak @ {rate:g}/s", unit="query")
    begin = time.perf_counter()

    async def one(question: str) -> None:
        nonlocal mixed
        try:
            answer = await ask(question)
        except Exception as exc:  # every failure is counted by its type; none may go missing
            outcomes[type(exc).__name__] += 1
        else:
            outcomes["answered"] += 1
            if answer != expected[question]:
                differing.append({"question": question, "alone": expected[question], "under_load": answer})
                mixed += _closer_to_another(answer, question, expected)
        bar.update()

    async def sample_memory(every_s: float = 1.0) -> None:
        while True:
            memory.append((time.perf_counter() - begin, *_rss_mib()))
            await asyncio.sleep(every_s)

    sampler = asyncio.create_task(sample_memory())
    tasks, arrival = [], 0.0
    for i in range(queries):
        arrival += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, begin + arrival - time.perf_counter()))
        tasks.append(asyncio.create_task(one(questions[i % len(questions)])))
    await asyncio.wait(tasks, timeout=None)
    sampler.cancel()
    memory.append((time.perf_counter() - begin, *_rss_mib()))
    bar.close()
    sent, accounted = len(tasks), sum(outcomes.values())
    return {"sent": sent, "outcomes": dict(outcomes), "lost": sent - accounted,
            "answers_differing_from_alone": len(differing), "closer_to_another_question": mixed,
            "differing_examples": differing[:3],
            "seconds": time.perf_counter() - begin, "memory_mib": memory}


def soak(ask: AskAsync, questions: Sequence[str], queries: int, rate: float, seed: int = 0) -> dict[str, Any]:
    """Ask each question once alone (the expected answers), then send ``queries`` at ``rate`` per second.
    Memory is reported as samples (seconds, this process's MiB, its children's MiB) and, per process
    kind, as where it stood at the start, half-way and the end."""
    async def run() -> dict[str, Any]:
        expected = {question: await ask(question) for question in questions}
        return await _soak(ask, questions, expected, queries, rate, seed)

    report = asyncio.run(run())
    samples = report["memory_mib"]
    middle = samples[len(samples) // 2]
    report["memory_summary_mib"] = {kind: {"start": samples[0][i], "middle": middle[i], "end": samples[-1][i],
                                           "max": max(sample[i] for sample in samples)}
                                    for i, kind in ((1, "this_process"), (2, "children"))}
    return report


def format_soak(report: dict[str, Any]) -> str:
    """The soak's figures as lines of text."""
    outcomes = ", ".join(f"{name} {count}" for name, count in sorted(report["outcomes"].items()))
    memory = "; ".join(f"{kind.replace('_', ' ')} {m['start']:.0f} -> {m['middle']:.0f} -> {m['end']:.0f} MiB (max {m['max']:.0f})"
                       for kind, m in report["memory_summary_mib"].items())
    return (f"sent {report['sent']} in {report['seconds']:.0f} s: {outcomes}; lost {report['lost']}\n"
            f"answers differing from the same question asked alone: {report['answers_differing_from_alone']} "
            f"(closer to another question's answer than to their own: {report['closer_to_another_question']})\n"
            f"memory at the start -> half-way -> the end: {memory}")
