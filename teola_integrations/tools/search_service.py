"""A local web-search service on loopback, for the search-engine-empowered generation app.

It stands in for a search API (the paper's app calls one): an HTTP server on 127.0.0.1 that ranks the
demo corpus by BM25 and answers after a configurable latency, as a remote search API would. The
apps reach it over real HTTP (``urllib``), so what Teola overlaps with the search is a real wait on
a socket, not a sleep inside the process's own code.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

from teola_integrations.tools.data import Chunk

_WORD = re.compile(r"[a-z0-9_]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 over a fixed list of chunks (k1 1.5, b 0.75)."""

    def __init__(self, chunks: Sequence[Chunk], k1: float = 1.5, b: float = 0.75) -> None:
        self.chunks = list(chunks)
        self.k1, self.b = k1, b
        self.terms = [Counter(_words(c.text)) for c in self.chunks]
        self.lengths = [sum(t.values()) for t in self.terms]
        self.mean_length = sum(self.lengths) / max(1, len(self.lengths))
        frequency = Counter(word for t in self.terms for word in t)
        n = len(self.chunks)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in frequency.items()}

    def search(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        """The ``k`` best chunks for ``query`` with their scores, best first (ties by corpus order)."""
        words = set(_words(query))
        scores = []
        for i, terms in enumerate(self.terms):
            norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / self.mean_length)
            score = sum(self.idf[w] * terms[w] * (self.k1 + 1) / (terms[w] + norm) for w in words if w in terms)
            scores.append((score, -i))
        best = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:k]
        return [(self.chunks[i], scores[i][0]) for i in best]


@dataclass(frozen=True)
class SearchResult:
    """One search hit: the page id, its title and a snippet, as search APIs return them."""

    id: str
    title: str
    snippet: str
    score: float


class SearchService:
    """The loopback search server. Use as a context manager (or ``start``/``stop``).

    ``latency_s`` is added to every answer, plus uniform jitter of ``jitter_s`` either side (seeded,
    so two runs see the same waits).
    """

    def __init__(self, chunks: Sequence[Chunk], latency_s: float = 0.3, jitter_s: float = 0.0,
                 snippet_chars: int = 600, seed: int = 0) -> None:
        if latency_s < 0 or jitter_s < 0 or jitter_s > latency_s:
            raise ValueError(f"latency_s and jitter_s must be >= 0 with jitter_s <= latency_s, got {latency_s}, {jitter_s}")
        self.latency_s, self.jitter_s, self.snippet_chars = latency_s, jitter_s, snippet_chars
        self._index = BM25(chunks)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The search endpoint, ``http://127.0.0.1:<port>/search``."""
        if self._server is None:
            raise RuntimeError("the search service is not running: call start() or use it in a with block")
        return f"http://127.0.0.1:{self._server.server_address[1]}/search"

    def _wait(self) -> float:
        with self._lock:
            return self.latency_s + self._random.uniform(-self.jitter_s, self.jitter_s)

    def results(self, query: str, k: int) -> list[SearchResult]:
        """What the service answers for ``query`` (without the latency)."""
        return [SearchResult(c.id, c.topic, c.text[: self.snippet_chars], round(s, 4)) for c, s in self._index.search(query, k)]

    def start(self) -> "SearchService":
        """Serve on an ephemeral loopback port, on a daemon thread."""
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urllib.parse.urlparse(self.path)
                params = urllib.parse.parse_qs(url.query)
                if url.path != "/search" or "q" not in params:
                    self.send_error(400, "use GET /search?q=<query>&k=<count>")
                    return
                time.sleep(service._wait())
                hits = service.results(params["q"][0], int(params.get("k", ["3"])[0]))
                body = json.dumps({"results": [hit.__dict__ for hit in hits]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="teola-search-service", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "SearchService":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def web_search(url: str, query: str, k: int = 3, timeout_s: float = 30.0) -> list[SearchResult]:
    """Ask the search service at ``url`` for ``k`` results: the client side, as an app calls an API."""
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode({'q': query, 'k': k})}", timeout=timeout_s) as answer:
        return [SearchResult(**hit) for hit in json.load(answer)["results"]]
