"""A loopback proxy in front of a real OpenAI-compatible server that injects the faults users meet: a
server that is not vLLM (no /version, no /tokenize), an error status, a connection cut mid-stream, a
slow answer. The tests check Teola's fault handling through it; point an app's client at it to check
your own."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Faults:
    """What the proxy does to the requests it forwards (tests set these between calls)."""

    hide_vllm: bool = False  # answer /version and /tokenize with 404, as another OpenAI-compatible server does
    status_once: int | None = None  # answer the next completion request with this status, then forward again
    cut_after_chunks: int | None = None  # close the connection after this many chunks of each completion answer
    delay_s: float = 0.0  # wait this long before forwarding a completion request


class FaultyProxy:
    """``with FaultyProxy(upstream_root) as proxy:`` forwards to ``upstream_root`` (a server's own URL,
    without /v1); ``proxy.base_url`` ends in /v1; ``proxy.faults`` says what to break."""

    def __init__(self, upstream_root: str) -> None:
        self.faults = Faults()
        self.completions = 0  # completion requests seen
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes: a cut is a cut

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def _forward(self, method: str) -> None:
                faults = proxy.faults
                if faults.hide_vllm and self.path in ("/version", "/tokenize"):
                    self._answer(404, b'{"detail": "Not Found"}')
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                completion = "completions" in self.path
                if completion:
                    proxy.completions += 1
                    if faults.status_once is not None:
                        status, faults.status_once = faults.status_once, None
                        self._answer(status, b'{"error": {"message": "injected by the test proxy", "code": %d}}' % status)
                        return
                    time.sleep(faults.delay_s)
                headers = {"content-type": self.headers.get("Content-Type", "application/json")}
                with httpx.stream(method, upstream_root + self.path, content=body or None, headers=headers,
                                  timeout=120) as answer:
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                    self.end_headers()
                    for i, chunk in enumerate(answer.iter_raw()):
                        if completion and faults.cut_after_chunks is not None and i >= faults.cut_after_chunks:
                            self.wfile.flush()
                            self.close_connection = True
                            return
                        self.wfile.write(chunk)
                        self.wfile.flush()

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
