"""The loopback search service: BM25 ranking, real HTTP, the configured latency, clear errors."""

import time
import urllib.error
import urllib.request

import pytest

from teola_integrations.tools.data import Chunk, load_corpus
from teola_integrations.tools.search_service import BM25, SearchService, web_search

CHUNKS = [
    Chunk("pass-0", "pass", "The pass statement is a null operation: nothing happens when it executes."),
    Chunk("break-0", "break", "The break statement terminates the nearest enclosing loop."),
    Chunk("yield-0", "yield", "A yield expression is used when defining a generator function."),
]


def test_bm25_ranks_the_chunk_that_shares_the_rarest_words_first() -> None:
    hits = BM25(CHUNKS).search("what does the pass statement do", k=2)
    assert [chunk.id for chunk, _ in hits] == ["pass-0", "break-0"]
    assert hits[0][1] > hits[1][1] > 0


def test_search_over_http_answers_after_the_configured_latency() -> None:
    with SearchService(CHUNKS, latency_s=0.2) as service:
        start = time.perf_counter()
        hits = web_search(service.url, "generator function yield", k=1)
        waited = time.perf_counter() - start
    assert [(h.id, h.title) for h in hits] == [("yield-0", "yield")]
    assert hits[0].snippet == CHUNKS[2].text
    assert waited >= 0.2


def test_results_are_the_same_over_http_as_in_process() -> None:
    chunks = load_corpus(40)
    with SearchService(chunks, latency_s=0.0) as service:
        assert web_search(service.url, "exception handling try finally", k=3) == service.results("exception handling try finally", 3)


def test_a_bad_request_gets_a_400_that_says_how_to_ask() -> None:
    with SearchService(CHUNKS, latency_s=0.0) as service:
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(service.url.replace("/search", "/nothing"))
    assert error.value.code == 400
    assert "/search?q=" in error.value.read().decode()


def test_the_url_of_a_stopped_service_and_bad_latencies_are_clear_errors() -> None:
    service = SearchService(CHUNKS)
    with pytest.raises(RuntimeError, match="not running"):
        service.url
    with pytest.raises(ValueError, match="jitter_s"):
        SearchService(CHUNKS, latency_s=0.1, jitter_s=0.2)
