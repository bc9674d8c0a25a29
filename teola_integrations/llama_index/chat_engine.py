"""``optimize()`` for LlamaIndex chat engines: a chat engine whose turns run on Teola's runtime."""

from __future__ import annotations

import inspect
import logging
from typing import Any, Iterable

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.chat_engine.types import AgentChatResponse, BaseChatEngine, StreamingAgentChatResponse
from llama_index.core.schema import NodeWithScore

from teola.adapters.llama_index import AppReading
from teola.adapters.llama_index.spans import entry_span, reports_its_own_span
from teola.optimizer.passes import PASSES
from teola.runtime.runtime import Runtime
from teola_integrations.llama_index.app import CompiledApp, OptimizedApp

log = logging.getLogger(__name__)


class TeolaChatEngine(OptimizedApp, BaseChatEngine):
    """A LlamaIndex chat engine whose ``chat``/``achat`` turns run as primitive graphs on shared engines.

    It keeps the wrapped engine's interface and state: the same memory (a turn reads and extends the
    wrapped engine's own chat history), the same ``AgentChatResponse`` (text, sources, source nodes),
    the same spans and callback events, the same exceptions. ``stream_chat``/``astream_chat``,
    ``reset`` and ``chat_history`` are the wrapped engine's own (streamed turns run natively for now).
    ``plan`` is the lowered turn after the chosen passes.
    """

    def __init__(self, native: BaseChatEngine, reading: AppReading, runtime: Runtime,
                 passes: Iterable[str] = PASSES) -> None:
        self.native = native
        self.callback_manager = native.callback_manager
        self._reports_chat = not reading.whole  # an engine run whole reports its own chat span
        self._app = CompiledApp(reading, runtime, passes, self)
        self._told_streaming = False
        self._takes_prev_chunks = "prev_chunks" in inspect.signature(native.chat).parameters

    @reports_its_own_span
    def chat(self, message: str, chat_history: list[ChatMessage] | None = None,
             prev_chunks: list[NodeWithScore] | None = None) -> AgentChatResponse:
        """Answer as the wrapped engine's ``chat`` does, reporting its span and its components' spans
        and events to LlamaIndex's instrumentation (``prev_chunks``: a ContextChatEngine's)."""
        inputs = self._inputs(message, chat_history, prev_chunks)
        if not self._reports_chat:
            return self._app.run({**inputs, "spans": None})
        with entry_span(self.native, "chat", False, *self._args(inputs)) as span, self.callback_manager.as_trace("chat"):
            span.result = self._app.run({**inputs, "spans": span.context})
        return span.result

    @reports_its_own_span
    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None,
                    prev_chunks: list[NodeWithScore] | None = None) -> AgentChatResponse:
        """``chat``, awaited."""
        inputs = self._inputs(message, chat_history, prev_chunks)
        if not self._reports_chat:
            return await self._app.arun({**inputs, "spans": None})
        with entry_span(self.native, "achat", True, *self._args(inputs)) as span, self.callback_manager.as_trace("chat"):
            span.result = await self._app.arun({**inputs, "spans": span.context})
        return span.result

    @reports_its_own_span
    def stream_chat(self, message: str, chat_history: list[ChatMessage] | None = None,
                    prev_chunks: list[NodeWithScore] | None = None) -> StreamingAgentChatResponse:
        """The wrapped engine's ``stream_chat`` (a streamed turn runs natively for now)."""
        self._tell_streaming()
        return self.native.stream_chat(*self._args(self._inputs(message, chat_history, prev_chunks))[0])

    @reports_its_own_span
    async def astream_chat(self, message: str, chat_history: list[ChatMessage] | None = None,
                           prev_chunks: list[NodeWithScore] | None = None) -> StreamingAgentChatResponse:
        """The wrapped engine's ``astream_chat`` (a streamed turn runs natively for now)."""
        self._tell_streaming()
        return await self.native.astream_chat(*self._args(self._inputs(message, chat_history, prev_chunks))[0])

    @reports_its_own_span
    def reset(self) -> None:
        """Clear the wrapped engine's memory."""
        self.native.reset()

    @property
    def chat_history(self) -> list[ChatMessage]:
        """The wrapped engine's chat history."""
        return self.native.chat_history

    def _inputs(self, message: str, chat_history: list[ChatMessage] | None,
                prev_chunks: list[NodeWithScore] | None) -> dict[str, Any]:
        if not isinstance(message, str):
            raise TypeError(f"chat() takes the user's message as a str, got {type(message).__name__}")
        if prev_chunks is not None and not self._takes_prev_chunks:
            raise TypeError(f"{type(self.native).__name__} takes no prev_chunks (a ContextChatEngine does)")
        return {"message": message, "chat_history": chat_history, "prev_chunks": prev_chunks}

    @staticmethod
    def _args(inputs: dict[str, Any]) -> tuple[tuple, dict]:
        """The arguments the wrapped engine's own method gets for ``inputs`` (``prev_chunks`` where given)."""
        args = (inputs["message"], inputs["chat_history"])
        return (args if inputs["prev_chunks"] is None else (*args, inputs["prev_chunks"])), {}

    def _tell_streaming(self) -> None:
        if not self._told_streaming:
            log.warning("teola: %s streams its turns natively (unoptimized); chat() and achat() run on Teola",
                        type(self.native).__name__)
            self._told_streaming = True


