"""Components run as-is run as the query was asked: sync in a query, the async twin on the caller's loop in an aquery."""

import asyncio
import threading

from teola.adapters.llama_index.as_asked import asked, run_as_asked


def _sync(x):
    return ("sync", x, threading.current_thread().name)


async def _twin(x):
    return ("async", x, threading.current_thread().name)


def test_a_query_runs_the_sync_method_and_an_aquery_the_twin_on_its_own_loop():
    with asked(asynchronously=False):
        assert run_as_asked(_sync, _twin, 1) == ("sync", 1, threading.current_thread().name)

    async def aquery():
        caller = threading.current_thread().name
        with asked(asynchronously=True):  # as a runtime thread runs the component while the caller awaits
            answer = await asyncio.to_thread(run_as_asked, _sync, _twin, x=2)
        return caller, answer

    caller, answer = asyncio.run(aquery())
    assert answer == ("async", 2, caller)
