"""The soak's bookkeeping, on a plain async function standing in for an app (the runtime's own soak
with its engines is tests/runtime/test_admission.py; `teola soak` runs the real apps)."""

import asyncio

from teola.runtime.errors import OverloadedError
from teola_integrations.tools.soak import format_soak, soak


def test_every_query_is_counted_as_answered_or_by_its_error_and_odd_answers_are_named():
    calls = {"n": 0}

    async def ask(question):
        calls["n"] += 1
        n = calls["n"]  # this call's number (others start while it sleeps)
        await asyncio.sleep(0.001)
        if n > 2 and n % 5 == 0:
            raise OverloadedError("full")
        if n > 2 and n % 7 == 0:
            return question.upper() + " drifted"
        if n > 2 and n % 11 == 0:  # mixed up: the other question's answer
            return "BERRY's answer" if question == "apple" else "APPLE's answer"
        return question.upper() + "'s answer"

    report = soak(ask, ["apple", "berry"], queries=60, rate=2000.0)
    assert report["sent"] == 60 and report["lost"] == 0
    assert sum(report["outcomes"].values()) == 60 and report["outcomes"]["OverloadedError"] > 0
    assert report["answers_differing_from_alone"] > report["closer_to_another_question"] > 0
    # examples come in the order queries finished, which the loop does not fix
    assert all(e["under_load"].endswith(" drifted") or e["under_load"] in ("APPLE's answer", "BERRY's answer")
               for e in report["differing_examples"])
    assert report["memory_mib"][0][1] > 0 and report["memory_summary_mib"]["this_process"]["max"] > 0
    # settled before the first query, as each quarter of the queries is sent, and after the last
    settled = report["memory_summary_mib"]["this_process"]["settled"]
    assert len(settled) == 5 and all(mib > 0 for mib in settled)
    assert [t for t, *_ in report["memory_settled_mib"]] == sorted(t for t, *_ in report["memory_settled_mib"])
    text = format_soak(report)
    assert "lost 0" in text and "OverloadedError" in text and "this process" in text


def test_settled_memory_leaves_out_what_the_allocator_keeps_free():
    """Memory freed by Python but kept by glibc shows in the RSS; the settled reading hands it back first."""
    import ctypes

    from teola_integrations.tools.soak import _rss_mib, _settled_rss_mib

    if getattr(ctypes.CDLL(None), "malloc_trim", None) is None:
        import pytest
        pytest.skip("this C library keeps no free memory to hand back (no malloc_trim): not glibc")
    _settled_rss_mib()
    blocks = [bytearray(b"x" * 1000) for _ in range(200_000)]  # ~200 MiB in small blocks, kept in glibc's heap
    del blocks[:-1]  # the last one pins the top of the heap, so freeing the rest leaves a hole glibc keeps
    assert _rss_mib()[0] - _settled_rss_mib()[0] > 100
