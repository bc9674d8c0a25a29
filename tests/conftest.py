"""Shared fixtures: real engines, started once per test session (vLLM takes 10-50 s on CPU)."""

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TEOLA_CACHE", str(_ROOT / ".teola-cache"))
os.environ.setdefault("VLLM_CACHE_ROOT", str(_ROOT / ".teola-cache" / "vllm"))

MAX_TOKENS = 48


def pytest_sessionfinish(session, exitstatus):
    """Stop the engines while pytest's output streams are still open (vLLM logs as it shuts down)."""
    from teola.runtime.runtime import shutdown_runtime

    shutdown_runtime()


@pytest.fixture(scope="session")
def runtime():
    from teola.runtime.runtime import get_runtime

    return get_runtime()


@pytest.fixture(scope="session")
def llm():
    from teola_integrations.llama_index import TeolaLLM

    return TeolaLLM(max_tokens=MAX_TOKENS)


@pytest.fixture(scope="session")
def chat():
    """A LangChain chat model on the same shared engine as ``llm``."""
    from teola_integrations.langchain import TeolaChatModel

    return TeolaChatModel(max_tokens=MAX_TOKENS)


@pytest.fixture(scope="session")
def embed_model():
    from teola_integrations.llama_index import TeolaEmbedding

    return TeolaEmbedding()


@pytest.fixture(scope="session")
def corpus():
    from teola_integrations.tools.data import load_corpus

    return load_corpus()


@pytest.fixture(scope="session")
def questions():
    from teola_integrations.tools.data import load_questions

    return load_questions()


@pytest.fixture(scope="session")
def vllm_server():
    """A real vLLM OpenAI-compatible server on loopback (the packaged SmolLM2, served as ``smollm2``),
    started once per test session, as users run one."""
    from teola_integrations.tools.vllm_server import VLLMServer

    with VLLMServer() as server:
        yield server
