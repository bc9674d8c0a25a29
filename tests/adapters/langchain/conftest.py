"""Fixtures of the LangChain adapter's graph-logic tests."""

import pytest
from langchain_core.language_models import FakeListChatModel

from teola.optimizer.ops import EngineId, EngineKind
from teola.optimizer.values import Sampling


class EngineChat(FakeListChatModel):
    """A fake chat model that carries what an engine-backed one carries."""

    teola_engine: EngineId = EngineId(EngineKind.LLM, "llm")
    teola_sampling: Sampling = Sampling(max_tokens=8)


@pytest.fixture
def fake_chat() -> EngineChat:
    """A fake chat model the tracer lowers as an engine's (its graphs are read, never run on engines)."""
    return EngineChat(responses=["x"])
