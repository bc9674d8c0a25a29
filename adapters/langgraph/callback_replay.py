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
from typing import Any, Callable, Iterator, AsyncIterator
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.manager import ahandle_event, handle_event
from langchain_core.tracers._streaming import _StreamingCallbackHandler

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
# A custom-stream write of the node (``get_stream_writer()``), kept in order among the callbacks.
STREAM_WRITE = "stream_write"

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
        """Keep one event (also used for the node's custom stream writes)."""
        with self._lock:
            self.events.append((name, args, kwargs))


for _name in IGNORE_FLAG:
    setattr(CallbackRecorder, _name, _recording(_name))


class StreamingCallbackRecorder(CallbackRecorder, _StreamingCallbackHandler):
    """The recorder where a real handler asks models to stream (LangGraph's ``messages`` mode): a
    chat model streams exactly when one of its handlers is a streaming handler."""

    def tap_output_iter(self, run_id: UUID, output: Iterator[Any]) -> Iterator[Any]:
        """Pass the output through; the tapping handler sees it at replay, in the end events."""
        return output

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Pass the output through; the tapping handler sees it at replay, in the end events."""
        return output


def recorder_for(handlers: list[BaseCallbackHandler]) -> CallbackRecorder:
    """A recorder that makes the node's models behave as the real ``handlers`` would make them."""
    streams = any(isinstance(h, _StreamingCallbackHandler) for h in handlers)
    return StreamingCallbackRecorder() if streams else CallbackRecorder()


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
            return {k: self.metadata_value(v) for k, v in value.items()}
        return value

    def metadata_value(self, value: Any) -> Any:
        """A metadata value with the early task id replaced by the real one."""
        if isinstance(value, str) and self._ids[0] in value:
            return value.replace(*self._ids)
        return value

    def event(self, event: Event) -> Event:
        """One recorded event, rewritten."""
        name, args, kwargs = event
        return name, tuple(self.value(a) for a in args), {k: self.value(v) for k, v in kwargs.items()}


def replay(
    events: list[Event],
    handlers: list[BaseCallbackHandler],
    rewrite: Rewrite,
    stream_writer: Callable[[Any], None] | None,
) -> None:
    """Send recorded ``events`` to the real ``handlers`` (and custom writes to ``stream_writer``)."""
    for event in events:
        name, args, kwargs = rewrite.event(event)
        if name == STREAM_WRITE:
            if stream_writer is not None:
                stream_writer(*args)
        else:
            handle_event(handlers, name, IGNORE_FLAG[name], *args, **kwargs)


async def areplay(
    events: list[Event],
    handlers: list[BaseCallbackHandler],
    rewrite: Rewrite,
    stream_writer: Callable[[Any], None] | None,
) -> None:
    """``replay`` for an async graph run (async handlers are awaited in order)."""
    for event in events:
        name, args, kwargs = rewrite.event(event)
        if name == STREAM_WRITE:
            if stream_writer is not None:
                stream_writer(*args)
        else:
            await ahandle_event(handlers, name, IGNORE_FLAG[name], *args, **kwargs)
