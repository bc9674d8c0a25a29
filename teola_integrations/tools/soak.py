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

Memory is read two ways. Once a second, the resident memory (RSS) as the system sees it. And
"settled", before the first query, as each quarter of the queries is sent and after the last one:
this process's RSS once its garbage is collected and its allocator (glibc) has handed back the
free memory it keeps, so that what live objects hold is not hidden by what the allocator caches
(a long run with many threads leaves hundreds of MiB free inside glibc's arenas). The children
(vLLM's engine core) are read as they are.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
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


def _settled_rss_mib() -> tuple[float, float]:
    """``_rss_mib`` once this process has collected its garbage and glibc has handed the free memory it
    keeps back to the system (elsewhere, once garbage is collected): what live objects hold."""
    gc.collect()
    malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # this program's C library
    if malloc_trim is not None:
        malloc_trim(0)
    return _rss_mib()


def _closer_to_another(answer: str, question: str, expected: dict[str, str]) -> bool:
    """Whether ``answer`` starts more like another question's answer alone than like its own."""
    own = len(os.path.commonprefix([answer, expected[question]]))
    return any(len(os.path.commonprefix([answer, other])) >= own
               for asked, other in expected.items() if asked != question and other != expected[question])


async def _soak(ask: AskAsync, questions: Sequence[str], expected: dict[str, str], queries: int, rate: float,
                seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    examples: list[dict[str, str]] = []  # the first few differing answers (all of them would grow with the run)
    differing = mixed = 0
    memory: list[tuple[float, float, float]] = []
    settled: list[tuple[float, float, float]] = []
    bar = tqdm(total=queries, desc=f"soak @ {rate:g}/s", unit="query")
    begin = time.perf_counter()

    async def one(question: str) -> None:
        nonlocal differing, mixed
        try:
            answer = await ask(question)
        except Exception as exc:  # every failure is counted by its type; none may go missing
            outcomes[type(exc).__name__] += 1
        else:
            outcomes["answered"] += 1
            if answer != expected[question]:
                differing += 1
                mixed += _closer_to_another(answer, question, expected)
                if len(examples) < 3:
                    examples.append({"question": question, "alone": expected[question], "under_load": answer})
        bar.update()

    async def sample_memory(every_s: float = 1.0) -> None:
        while True:
            memory.append((time.perf_counter() - begin, *_rss_mib()))
            await asyncio.sleep(every_s)

    def settle() -> None:
        settled.append((time.perf_counter() - begin, *_settled_rss_mib()))

    sampler = asyncio.create_task(sample_memory())
    running: set[asyncio.Task] = set()  # finished queries are let go, so the soak holds only what is in the air
    arrival = 0.0
    quarters = {queries * k // 4 for k in range(4)}
    for i in range(queries):
        if i in quarters:
            settle()
        arrival += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, begin + arrival - time.perf_counter()))
        task = asyncio.create_task(one(questions[i % len(questions)]))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.wait(set(running))
    sampler.cancel()
    memory.append((time.perf_counter() - begin, *_rss_mib()))
    settle()
    bar.close()
    return {"sent": queries, "outcomes": dict(outcomes), "lost": queries - sum(outcomes.values()),
            "answers_differing_from_alone": differing, "closer_to_another_question": mixed,
            "differing_examples": examples,
            "seconds": time.perf_counter() - begin, "memory_mib": memory, "memory_settled_mib": settled}


def soak(ask: AskAsync, questions: Sequence[str], queries: int, rate: float, seed: int = 0) -> dict[str, Any]:
    """Ask each question once alone (the expected answers), then send ``queries`` at ``rate`` per second.
    Memory is reported as samples (seconds, this process's MiB, its children's MiB): ``memory_mib`` once
    a second, ``memory_settled_mib`` at the start, each quarter of the queries and the end (see the
    module's docstring); ``memory_summary_mib`` sums both up per process kind."""
    async def run() -> dict[str, Any]:
        expected = {question: await ask(question) for question in questions}
        return await _soak(ask, questions, expected, queries, rate, seed)

    report = asyncio.run(run())
    samples, settled = report["memory_mib"], report["memory_settled_mib"]
    report["memory_summary_mib"] = {kind: {"settled": [sample[i] for sample in settled],
                                           "max": max(sample[i] for sample in samples)}
                                    for i, kind in ((1, "this_process"), (2, "children"))}
    return report


def format_soak(report: dict[str, Any]) -> str:
    """The soak's figures as lines of text."""
    outcomes = ", ".join(f"{name} {count}" for name, count in sorted(report["outcomes"].items()))
    memory = "; ".join(f"{kind.replace('_', ' ')} {' -> '.join(f'{v:.0f}' for v in m['settled'])} MiB "
                       f"(highest RSS seen {m['max']:.0f})" for kind, m in report["memory_summary_mib"].items())
    return (f"sent {report['sent']} in {report['seconds']:.0f} s: {outcomes}; lost {report['lost']}\n"
            f"answers differing from the same question asked alone: {report['answers_differing_from_alone']} "
            f"(closer to another question's answer than to their own: {report['closer_to_another_question']})\n"
            f"memory settled at the start -> each quarter of the queries sent -> the end: {memory}")
