"""LlamaIndex LLM and embedding classes backed by Teola's shared engines.

A native LlamaIndex app built with these runs on the very engines its optimized twin runs on, so
a latency comparison measures the execution strategy and nothing else.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterator, Sequence

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import (ChatMessage, ChatResponse, ChatResponseAsyncGen, ChatResponseGen,
                                              CompletionResponse, CompletionResponseAsyncGen, CompletionResponseGen,
                                              LLMMetadata, MessageRole)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import Field, PrivateAttr

from teola.adapters.llama_index import to_prompt
from teola.optimizer.ops import EngineId
from teola.optimizer.values import Prompt, Sampling
from teola.runtime.models import DEFAULT_EMBEDDING, DEFAULT_LLM
from teola.runtime.runtime import Runtime, get_runtime
from teola.runtime.clients import EmbeddingClient, LLMClient


class TeolaLLM(CustomLLM):
    """A LlamaIndex chat LLM served by Teola's shared vLLM engine (greedy by default).

    ``model`` is ``"smollm2-135m-instruct"`` (the packaged CPU default), a local model folder or a
    hub id. Chat messages are rendered with the model's own chat template. ``json_schema`` makes
    every answer JSON under that schema (vLLM's structured outputs): what a small model needs to
    write a framework's JSON at all (LlamaIndex's sub-questions). ``runtime`` is the Teola runtime
    whose engines serve it (the process's shared one by default).
    """

    model: str = Field(default=DEFAULT_LLM, description="model name, folder or hub id")
    max_tokens: int = Field(default=128, gt=0, description="the most tokens one answer may have")
    temperature: float = Field(default=0.0, ge=0.0, description="0 is greedy decoding")
    max_model_len: int = Field(default=2048, gt=0, description="context window the engine is started with")
    json_schema: dict[str, Any] | None = Field(
        default=None, description="every answer is JSON valid under this JSON schema (the engine's guided decoding)")
    _client: LLMClient = PrivateAttr()

    def __init__(self, runtime: Runtime | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        runtime = runtime or get_runtime()
        self._client = LLMClient(runtime, runtime.llm(self.model, max_model_len=self.max_model_len))

    @classmethod
    def class_name(cls) -> str:
        return "TeolaLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.max_model_len, num_output=self.max_tokens, is_chat_model=True,
                           model_name=self.model)

    @property
    def teola_engine(self) -> EngineId:
        """The shared engine this LLM runs on."""
        return self._client.id

    @property
    def teola_sampling(self) -> Sampling:
        """The decoding settings of this LLM."""
        schema = json.dumps(self.json_schema, sort_keys=True) if self.json_schema else None
        return Sampling(max_tokens=self.max_tokens, temperature=self.temperature, json_schema=schema)

    def _text(self, prompt: Prompt) -> str:
        return self._client.text(prompt, self.teola_sampling)

    async def _atext(self, prompt: Prompt) -> str:
        return await self._client.atext(prompt, self.teola_sampling)

    def _deltas(self, prompt: Prompt) -> Iterator[str]:
        return self._client.deltas(prompt, self.teola_sampling)

    def _adeltas(self, prompt: Prompt) -> AsyncIterator[str]:
        return self._client.adeltas(prompt, self.teola_sampling)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=self._text(to_prompt(messages))))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = await self._atext(to_prompt(messages))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            text = ""
            for delta in self._deltas(to_prompt(messages)):
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for delta in self._adeltas(to_prompt(messages)):
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._text(Prompt(text=prompt)))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=await self._atext(Prompt(text=prompt)))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = ""
            for delta in self._deltas(Prompt(text=prompt)):
                text += delta
                yield CompletionResponse(text=text, delta=delta)

        return gen()

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            text = ""
            async for delta in self._adeltas(Prompt(text=prompt)):
                text += delta
                yield CompletionResponse(text=text, delta=delta)

        return gen()


class TeolaEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model served by Teola's shared embedding engine (batched across queries)."""

    model: str = Field(default=DEFAULT_EMBEDDING, description="packaged default, folder or hub id")
    _client: EmbeddingClient = PrivateAttr()

    def __init__(self, runtime: Runtime | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", kwargs.get("model", DEFAULT_EMBEDDING))
        super().__init__(**kwargs)
        runtime = runtime or get_runtime()
        self._client = EmbeddingClient(runtime, runtime.embedding(self.model))

    @classmethod
    def class_name(cls) -> str:
        return "TeolaEmbedding"

    @property
    def teola_engine(self) -> EngineId:
        """The shared engine this model runs on."""
        return self._client.id

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._client.embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._client.aembed([query]))[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_query_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._client.embed(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await self._client.aembed(texts)
