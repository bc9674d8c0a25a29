"""``optimize()`` for LlamaIndex chat engines: a chat engine whose turns run on Teola's runtime."""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any, Iterable

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.chat_engine.types import AgentChatResponse, BaseChatEngine, StreamingAgentChatResponse
from llama_index.core.schema import NodeWithScore

from teola.adapters.llama_index import AppReading, read_chat_engine, streamed_turn_why_not
from teola.adapters.llama_index.spans import entry_span, reports_its_own_span
from teola.optimizer.ir import Graph
from teola.optimizer.passes import PASSES
from teola.runtime.runtime import Runtime
from teola_integrations.llama_index.app import CompiledApp, OptimizedApp

log = logging.getLogger(__name__)


class TeolaChatEngine(OptimizedApp, BaseChatEngine):
    """A LlamaIndex chat engine whose turns run as primitive graphs on shared engines.

    It keeps the wrapped engine's interface and state: the same memory (a turn reads and extends the
    wrapped engine's own chat history), the same ``AgentChatResponse`` (text, sources, source nodes),
    the same spans and callback events, the same exceptions. ``stream_chat``/``astream_chat`` turns
    (of a condense-plus-context, context, condense-question or simple engine) run on the engines too,
    their ``StreamingAgentChatResponse`` streaming the answer's tokens as the engine decodes them (the
    streamed plan is built on the first streamed turn: ``streamed_plan``); other engines' streamed
    turns, and those whose answer Teola cannot stream, run natively (one log line). ``reset`` and ``chat_history`` are the wrapped engine's own.
    ``plan`` is the lowered turn after the chosen passes.
    """

    def __init__(self, native: BaseChatEngine, reading: AppReading, runtime: Runtime,
                 passes: Iterable[str] = PASSES) -> None:
        self.native = native
        self.callback_manager = native.callback_manager
        self._reports_chat = not reading.whole  # an engine run whole reports its own chat span
        self._app = CompiledApp(reading, runtime, passes, self)
        self._runtime, self._passes = runtime, tuple(passes)
        self._streamed: CompiledApp | None = None
        self._streamed_lock = threading.Lock()
        self._why_not_streamed = streamed_turn_why_not(native)
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
        """Answer as the wrapped engine's ``stream_chat`` does: a ``StreamingAgentChatResponse`` whose
        tokens come as the engine decodes them, the answer stored in the memory once read."""
        inputs = self._inputs(message, chat_history, prev_chunks)
        streamed = self._streamed_app()
        if streamed is None:
            return self.native.stream_chat(*self._args(inputs)[0])
        with entry_span(self.native, "stream_chat", False, *self._args(inputs)) as span, \
                self.callback_manager.as_trace("chat"):
            span.result = streamed.run({**inputs, "spans": span.context})
        return span.result

    @reports_its_own_span
    async def astream_chat(self, message: str, chat_history: list[ChatMessage] | None = None,
                           prev_chunks: list[NodeWithScore] | None = None) -> StreamingAgentChatResponse:
        """``stream_chat``, awaited: the answer streams on the caller's loop, stored by a task there."""
        inputs = self._inputs(message, chat_history, prev_chunks)
        streamed = self._streamed_app()
        if streamed is None:
            return await self.native.astream_chat(*self._args(inputs)[0])
        with entry_span(self.native, "astream_chat", True, *self._args(inputs)) as span, \
                self.callback_manager.as_trace("chat"):
            span.result = await streamed.arun({**inputs, "spans": span.context})
        return span.result

    @property
    def streamed_plan(self) -> Graph | None:
        """The plan a streamed turn runs (None: streamed turns run natively, or none ran yet)."""
        return self._streamed.compiled.plan if self._streamed is not None else None

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

    def _streamed_app(self) -> CompiledApp | None:
        """The streamed turn, compiled on first use; None where it runs natively (said once, with why)."""
        if self._why_not_streamed is not None:
            if not self._told_streaming:
                log.warning("teola: %s streams its turns natively (unoptimized): %s; chat() and achat() run on Teola",
                            type(self.native).__name__, self._why_not_streamed)
                self._told_streaming = True
            return None
        with self._streamed_lock:
            if self._streamed is None:
                self._streamed = CompiledApp(read_chat_engine(self.native, streamed=True), self._runtime, self._passes,
                                             self)
        return self._streamed


