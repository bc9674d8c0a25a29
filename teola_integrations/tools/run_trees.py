"""What a tracing tool would show of an app, as rows to compare native and Teola runs by.

``LlamaIndexRecorder`` records LlamaIndex's spans and instrumentation events and flattens them
into rows: depth, ``Class.method`` and the events inside, children in a fixed order.
``LlamaIndexCallbackRecorder`` does the same for LlamaIndex's legacy callback events.
``langchain_run_tree`` flattens a LangChain run (as ``collect_runs`` or LangSmith keep it) into
rows: depth, name, run type, tags, inputs, outputs and whether it failed, children in a fixed
order (LangChain runs parallel steps in any order), dict keys in order. Message and run ids, which
are fresh on every run, are left out.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator

from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.callbacks.schema import CBEventType
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.dispatcher import instrument_tags
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.span.simple import SimpleSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from pydantic import Field

_IDS = re.compile(r"(id=|'id': )'(lc_run-|run-)[^']*'")


def _scrubbed(values: Any) -> str:
    return _IDS.sub("", str(_sorted_keys(values)))


def _sorted_keys(values: Any) -> Any:
    """Dicts with their keys in order: which key a stream's accumulated dict got first is timing."""
    if isinstance(values, dict):
        return {key: _sorted_keys(values[key]) for key in sorted(values, key=str)}
    return values


def langchain_run_tree(run: Any, depth: int = 0) -> list[tuple]:
    """``run`` and its descendants as comparable rows, depth first, children by name and tags."""
    rows = [(depth, run.name, run.run_type, tuple(sorted(run.tags or [])), _scrubbed(run.inputs),
             _scrubbed(run.outputs), run.error is not None)]
    for child in sorted(run.child_runs, key=lambda c: (c.name, tuple(sorted(c.tags or [])))):
        rows += langchain_run_tree(child, depth + 1)
    return rows


def langchain_run_metadata(run: Any, depth: int = 0) -> list[tuple]:
    """``run`` and its descendants' metadata (what a tracing tool shows beside the tree), in
    ``langchain_run_tree``'s order."""
    rows = [(depth, run.name, tuple(sorted((run.extra.get("metadata") or {}).items())))]
    for child in sorted(run.child_runs, key=lambda c: (c.name, tuple(sorted(c.tags or [])))):
        rows += langchain_run_metadata(child, depth + 1)
    return rows


# LlamaIndex helper spans Teola does not report (see teola.adapters.llama_index.spans): left out of both trees.
LLAMA_INDEX_HELPER_SPANS = ("TokenTextSplitter.split_text", "DefaultRefineProgram.__call__", "DefaultRefineProgram.acall")


class LlamaIndexRecorder(BaseSpanHandler[SimpleSpan], BaseEventHandler):
    """Records the spans (name, parent, instrument tags) and events LlamaIndex's instrumentation
    reports while it is attached to the root dispatcher (``with LlamaIndexRecorder() as recorder:``)."""

    spans: dict = Field(default_factory=dict)
    tags: dict = Field(default_factory=dict)
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "LlamaIndexRecorder"

    def __enter__(self) -> "LlamaIndexRecorder":
        root = get_dispatcher()
        root.add_span_handler(self)
        root.add_event_handler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        root = get_dispatcher()
        root.span_handlers.remove(self)
        root.event_handlers.remove(self)

    def new_span(self, id_: str, bound_args: Any, instance: Any = None, parent_span_id: str | None = None,
                 tags: Any = None, **kwargs: Any) -> SimpleSpan:
        self.spans[id_] = parent_span_id
        self.tags[id_] = dict(tags or {})
        return SimpleSpan(id_=id_, parent_id=parent_span_id)

    def prepare_to_exit_span(self, id_: str, bound_args: Any, instance: Any = None, result: Any = None,
                             **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, id_: str, bound_args: Any, instance: Any = None, err: BaseException | None = None,
                             **kwargs: Any) -> None:
        return None

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append((event.class_name(), event.span_id))

    def tag_sets(self, leave_out: tuple[str, ...] = LLAMA_INDEX_HELPER_SPANS) -> set[tuple]:
        """The distinct instrument tags the recorded spans carried (as sorted items), ``leave_out`` left out."""
        return {tuple(sorted(tags.items())) for span, tags in self.tags.items() if _span_name(span) not in leave_out}

    def tree(self, leave_out: tuple[str, ...] = LLAMA_INDEX_HELPER_SPANS) -> list[tuple]:
        """The recorded spans as rows (depth, name, the events in it in order), from each root span,
        children by name; spans named in ``leave_out`` are dropped, their children moved up."""
        kept = {span: parent for span, parent in self.spans.items() if _span_name(span) not in leave_out}

        def kept_parent(span: str | None) -> str | None:
            while span is not None and span not in kept:
                span = self.spans.get(span)
            return span

        children: dict[str | None, list[str]] = {}
        for span, parent in kept.items():
            children.setdefault(kept_parent(parent), []).append(span)

        def rows(span: str, depth: int) -> list[tuple]:
            events = tuple(name for name, owner in self.events if owner == span)
            out = [(depth, _span_name(span), events)]
            for child in sorted(children.get(span, []), key=lambda c: (_span_name(c), str(rows(c, 0)))):
                out += rows(child, depth + 1)
            return out

        return [row for root in sorted(children.get(None, []), key=_span_name) for row in rows(root, 0)]


def _span_name(span: str) -> str:
    """``Class.method`` of a span id ``Class.method-<uuid>``."""
    return span.split("-", 1)[0]


# LlamaIndex's helper events Teola does not report (see teola.adapters.llama_index.spans): left out of both trees.
LLAMA_INDEX_HELPER_EVENTS = (CBEventType.CHUNKING,)


class LlamaIndexCallbackRecorder(BaseCallbackHandler):
    """Records the events LlamaIndex's legacy callback system (``CallbackManager``, which
    ``TokenCountingHandler`` and ``LlamaDebugHandler`` hang on) reports: each event's type, parent and
    payload keys at start and end. Add it to the callback managers of the components (for instance
    through ``Settings.callback_manager`` before building them); ``stop()`` makes it ignore the rest."""

    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.events: dict[str, list] = {}
        self.recording = True

    def stop(self) -> None:
        """Record nothing more (its managers may outlive the comparison)."""
        self.recording = False

    def on_event_start(self, event_type: CBEventType, payload: dict | None = None, event_id: str = "",
                       parent_id: str = "", **kwargs: Any) -> str:
        if self.recording:
            self.events[event_id] = [event_type.value, parent_id, tuple(sorted(k.value for k in payload or {})), None]
        return event_id

    def on_event_end(self, event_type: CBEventType, payload: dict | None = None, event_id: str = "",
                     **kwargs: Any) -> None:
        if self.recording and event_id in self.events:
            self.events[event_id][3] = tuple(sorted(k.value for k in payload or {}))

    def start_trace(self, trace_id: str | None = None) -> None:
        """Traces are the query's own (the wrapper opens it as the native engine does)."""

    def end_trace(self, trace_id: str | None = None, trace_map: dict | None = None) -> None:
        """See ``start_trace``."""

    def tree(self, leave_out: tuple[CBEventType, ...] = LLAMA_INDEX_HELPER_EVENTS) -> list[tuple]:
        """The recorded events as rows (depth, type, start payload keys, end payload keys), from the
        events under no recorded event, children in a fixed order; ``leave_out`` types dropped."""
        dropped = {e.value for e in leave_out}
        children: dict[str | None, list[str]] = {}
        for event, (kind, parent, _, _) in self.events.items():
            if kind not in dropped:
                children.setdefault(parent if parent in self.events else None, []).append(event)

        def rows(event: str, depth: int) -> list[tuple]:
            kind, _, start, end = self.events[event]
            out = [(depth, kind, start, end)]
            for child in sorted(children.get(event, []), key=lambda c: str(rows(c, 0))):
                out += rows(child, depth + 1)
            return out

        return [row for root in sorted(children.get(None, []), key=lambda r: str(rows(r, 0))) for row in rows(root, 0)]


def callback_managers(app: Any, depth: int = 6) -> list[CallbackManager]:
    """Every distinct legacy callback manager reachable from ``app`` through its components' fields
    (a query engine's, its retrievers', models', synthesizer's ...): where to add a recorder to hear
    every event the app reports."""
    found: dict[int, CallbackManager] = {}
    seen: set[int] = set()

    def walk(value: Any, left: int) -> None:
        if left < 0 or id(value) in seen or isinstance(value, (str, bytes, int, float, type)):
            return
        seen.add(id(value))
        if isinstance(value, CallbackManager):
            found[id(value)] = value
            return
        if isinstance(value, dict):
            children = list(value.values())
        elif isinstance(value, (list, tuple, set)):
            children = list(value)
        else:
            children = [*getattr(value, "__dict__", {}).values(), *(getattr(value, "__pydantic_private__", None) or {}).values()]
        for child in children:
            walk(child, left - 1)

    walk(app, depth)
    return list(found.values())


@contextmanager
def traced(app: Any, tags: dict[str, Any] | None = None) -> Iterator[tuple[LlamaIndexRecorder, LlamaIndexCallbackRecorder]]:
    """Record what tracing tools see of ``app`` inside: LlamaIndex's spans and events, and the legacy
    callback events of every callback manager of its components (``callback_managers``); ``tags``:
    the instrument tags the work inside is asked under."""
    callbacks = LlamaIndexCallbackRecorder()
    managers = callback_managers(app)
    for manager in managers:
        if callbacks not in manager.handlers:  # managers may share their handler list
            manager.add_handler(callbacks)
    try:
        with LlamaIndexRecorder() as recorder, instrument_tags(tags or {}):
            yield recorder, callbacks
    finally:
        for manager in managers:
            if callbacks in manager.handlers:
                manager.remove_handler(callbacks)
