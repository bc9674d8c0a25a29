"""LangChain callbacks of a node started early: recorded while it runs, replayed when it is adopted.

A node Teola starts before LangGraph would must not show itself to the user's callbacks (tracers,
LangSmith, LangGraph's own ``messages`` stream) until LangGraph's loop reaches it: a run that is
discarded (its input turned out to change) must leave no trace, and an adopted one must appear in its
own step. So it runs with a ``CallbackRecorder`` as its only handler, built on the same parent run,
tags and metadata as the real task's callbacks, and ``replay`` sends the recorded events, in order,
to the real task's handlers once the real task adopts the run. What differs between the early task
and the real one is rewritten on the way: its input (the state it would have read in its step) and
its task id, which is in LangGraph's checkpoint namespace metadata.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, AsyncIterator, Callable, Iterator
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.manager import ahandle_event, handle_event
from teola.adapters.langchain.compat import TAPPING_HANDLER
from teola.adapters.langgraph import compat

# Which ``ignore_*`` flag of a handler silences each event: LangChain's callback managers pass these.
IGNORE_FLAG: dict[str, str | None] = {
    "on_llm_start": "ignore_llm",
    "on_chat_model_start": "ignore_chat_model",
    "on_llm_new_token": "ignore_llm",
    "on_llm_end": "ignore_llm",
    "on_llm_error": "ignore_llm",
    "on_stream_event": "ignore_llm",
    "on_chain_start": "ignore_chain",
    "on_chain_end": "ignore_chain",
    "on_chain_error": "ignore_chain",
    "on_tool_start": "ignore_agent",
    "on_tool_end": "ignore_agent",
    "on_tool_error": "ignore_agent",
    "on_agent_action": "ignore_agent",
    "on_agent_finish": "ignore_agent",
    "on_retriever_start": "ignore_retriever",
    "on_retriever_end": "ignore_retriever",
    "on_retriever_error": "ignore_retriever",
    "on_retry": "ignore_retry",
    "on_custom_event": "ignore_custom_event",
    "on_text": None,
}
# Kept in order among the callbacks: a custom-stream write of the node (``get_stream_writer()``), a chunk
# of a run's streamed output that a streaming handler taps (``astream_events``' ``on_chain_stream``,
# ``astream_log``'s ``streamed_output``), and a message LangGraph's ``messages`` handler is handed directly
# (``push_message``).
STREAM_WRITE = "stream_write"
TAP = "tap_output"
EMIT = "emit_message"

Event = tuple[str, tuple, dict]


def _recording(name: str) -> Callable[..., None]:
    def record(self: "CallbackRecorder", *args: Any, **kwargs: Any) -> None:
        self.record(name, args, kwargs)

    record.__name__ = name
    return record


class CallbackRecorder(BaseCallbackHandler):
    """A callback handler that keeps every event it is given, in order, for ``replay``."""

    run_inline = True  # called in order on the caller's thread, also under async managers
    raise_error = False

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def record(self, name: str, args: tuple, kwargs: dict) -> None:
        """Keep one event."""
        with self._lock:
            self.events.append((name, args, kwargs))

    def _emit(self, meta: Any, message: Any, *, dedupe: bool = False) -> None:
        self.record(EMIT, (meta, message), {"dedupe": dedupe})


for _name in IGNORE_FLAG:
    setattr(CallbackRecorder, _name, _recording(_name))


class TapRecording:
    """What a recorder adds when a real handler taps runs' streamed output (LangChain checks for a
    tapping handler by its methods, so only such recorders have them)."""

    def tap_output_iter(self, run_id: UUID, output: Iterator[Any]) -> Iterator[Any]:
        """Keep each chunk of a run's streamed output, passing it on."""
        for chunk in output:
            self.record(TAP, (run_id, chunk), {})  # type: ignore[attr-defined]
            yield chunk

    async def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """``tap_output_iter`` for an async stream."""
        async for chunk in output:
            self.record(TAP, (run_id, chunk), {})  # type: ignore[attr-defined]
            yield chunk

_classes: dict[tuple[type, ...], type[CallbackRecorder]] = {}


def recorder_for(handlers: list[BaseCallbackHandler]) -> CallbackRecorder:
    """A recorder the node's runnables treat as they treat the real ``handlers``: a chat model streams
    when a handler is a streaming one, a runnable's output is tapped, LangGraph's ``push_message``
    finds its ``messages`` handler. So it takes the marker classes the real handlers have, and the
    ``messages`` handler's namespace settings."""
    markers = tuple(m for m in compat.HANDLER_MARKERS if any(isinstance(h, m) for h in handlers))
    if markers not in _classes:
        taps = (TapRecording,) if TAPPING_HANDLER in markers else ()
        _classes[markers] = type("CallbackRecorder", (CallbackRecorder, *taps, *markers), {})
    recorder = _classes[markers]()
    for handler in handlers:
        if isinstance(handler, compat.MESSAGES_HANDLER):
            recorder.__dict__.update(compat.messages_handler_settings(handler))
    return recorder


class Rewrite:
    """What turns the early task's events into the real task's: its input and its task id."""

    def __init__(self, early_input: Any, real_input: Any, early_task_id: str, real_task_id: str) -> None:
        self._early_input, self._real_input = early_input, real_input
        self._ids = (early_task_id, real_task_id)

    def value(self, value: Any) -> Any:
        """``value`` as the real task would have passed it."""
        if value is self._early_input:
            return self._real_input
        if isinstance(value, dict) and value.__class__ is dict:
            return {k: self.value(v) for k, v in value.items()}
        if value.__class__ is tuple:
            return tuple(self.value(v) for v in value)
        return self.metadata_value(value)

    def metadata_value(self, value: Any) -> Any:
        """A metadata value with the early task id replaced by the real one."""
        if isinstance(value, str) and self._ids[0] in value:
            return value.replace(*self._ids)
        return value

    def event(self, event: Event) -> Event:
        """One recorded event, rewritten."""
        name, args, kwargs = event
        return name, tuple(self.value(a) for a in args), {k: self.value(v) for k, v in kwargs.items()}


def _plan(
    events: list[Event], handlers: list[BaseCallbackHandler], rewrite: Rewrite, stream_writer: Callable[[Any], None] | None
) -> Iterator[tuple[str, Any]]:
    """What replaying ``events`` does, in order: ``("call", thunk)`` for a plain call, ``("event",
    (name, args, kwargs))`` for a callback event, ``("tap", (handler, run_id, chunks))`` for a run's
    streamed output (all its chunks at once, where its first chunk was: a handler taps a run once)."""
    taps: dict[Any, list[Any]] = {}
    for name, args, _ in events:
        if name == TAP:
            taps.setdefault(args[0], []).append(args[1])
    for event in events:
        name, args, kwargs = rewrite.event(event)
        if name == STREAM_WRITE:
            if stream_writer is not None:
                yield "call", partial(stream_writer, *args)
        elif name == TAP:
            for handler in handlers if args[0] in taps else ():
                if isinstance(handler, TAPPING_HANDLER):
                    yield "tap", (handler, args[0], taps[args[0]])
            taps.pop(args[0], None)
        elif name == EMIT:
            for handler in handlers:
                if isinstance(handler, compat.MESSAGES_HANDLER):
                    yield "call", partial(handler._emit, *args, **kwargs)
        else:
            yield "event", (name, args, kwargs)


def replay(
    events: list[Event],
    handlers: list[BaseCallbackHandler],
    rewrite: Rewrite,
    stream_writer: Callable[[Any], None] | None,
) -> None:
    """Send recorded ``events`` to the real ``handlers`` (custom writes to ``stream_writer``)."""
    for kind, what in _plan(events, handlers, rewrite, stream_writer):
        if kind == "call":
            what()
        elif kind == "tap":
            handler, run_id, chunks = what
            for _ in handler.tap_output_iter(run_id, iter(chunks)):
                pass
        else:
            name, args, kwargs = what
            handle_event(handlers, name, IGNORE_FLAG[name], *args, **kwargs)


async def _aiter(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def areplay(
    events: list[Event],
    handlers: list[BaseCallbackHandler],
    rewrite: Rewrite,
    stream_writer: Callable[[Any], None] | None,
) -> None:
    """``replay`` for an async graph run (async handlers are awaited in order)."""
    for kind, what in _plan(events, handlers, rewrite, stream_writer):
        if kind == "call":
            what()
        elif kind == "tap":
            handler, run_id, chunks = what
            async for _ in handler.tap_output_aiter(run_id, _aiter(chunks)):
                pass
        else:
            name, args, kwargs = what
            await ahandle_event(handlers, name, IGNORE_FLAG[name], *args, **kwargs)
