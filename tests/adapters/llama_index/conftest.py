"""Fixtures of the LlamaIndex adapter's graph-logic tests."""

import pytest
from llama_index.llms.openai_like import OpenAILike


@pytest.fixture
def served_llm() -> OpenAILike:
    """An LLM Teola serves: a chat client of an OpenAI-compatible server (nothing is sent while reading)."""
    return OpenAILike(model="m", api_base="http://127.0.0.1:9/v1", api_key="k", is_chat_model=True)
