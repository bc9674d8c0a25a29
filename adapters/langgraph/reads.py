"""What a node read of its input: the state keys it looked at, or all of them.

A node started early gets its input as a ``ReadRecordingState``: a plain ``dict`` (LangGraph's
TypedDict states are dicts) that notes each key the node reads. Reading one key (``state["q"]``,
``state.get("q")``, ``"q" in state``) notes that key; anything that sees the whole state (iterating
it, ``items()``, ``len``, ``==``, copying it, ``**state``, printing it) notes every key. A read that
bypasses these methods cannot exist: CPython takes the overridden-method path for dict subclasses
that override ``__iter__`` (``dict(state)``, ``{**state}``, ``json.dumps`` go through ``keys``/
``items``).
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Iterator


class Reads:
    """The keys a node has read so far (thread-safe), or ``everything``."""

    def __init__(self) -> None:
        self._keys: set[str] = set()
        self.everything = False
        self._lock = threading.Lock()

    def note(self, key: Any) -> None:
        """Note that ``key`` was read."""
        with self._lock:
            self._keys.add(key)

    def note_all(self) -> None:
        """Note that the whole state was read."""
        self.everything = True

    def note_channels(self, channels: str | list[str]) -> None:
        """Note a read of LangGraph channels by name (a conditional edge reading the state)."""
        with self._lock:
            self._keys.update([channels] if isinstance(channels, str) else channels)

    def touches(self, channels: set[str]) -> bool:
        """Whether any of ``channels`` was read."""
        if not channels:
            return False
        with self._lock:
            return self.everything or not self._keys.isdisjoint(channels)

    @property
    def keys(self) -> frozenset[str]:
        """The keys read one by one (see ``everything`` for whole-state reads)."""
        with self._lock:
            return frozenset(self._keys)


class ReadRecordingState(dict):
    """A node's input dict that notes into ``reads`` what the node reads of it."""

    __slots__ = ("reads",)

    def __init__(self, values: dict[str, Any], reads: Reads) -> None:
        super().__init__(values)
        self.reads = reads

    def __getitem__(self, key: Any) -> Any:
        self.reads.note(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.reads.note(key)
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        self.reads.note(key)
        return super().__contains__(key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.reads.note(key)
        return super().setdefault(key, default)

    def pop(self, key: Any, *default: Any) -> Any:
        self.reads.note(key)
        return super().pop(key, *default)

    def __iter__(self) -> Iterator[Any]:
        self.reads.note_all()
        return super().__iter__()

    def keys(self):  # type: ignore[override]
        self.reads.note_all()
        return super().keys()

    def items(self):  # type: ignore[override]
        self.reads.note_all()
        return super().items()

    def values(self):  # type: ignore[override]
        self.reads.note_all()
        return super().values()

    def __len__(self) -> int:
        self.reads.note_all()
        return super().__len__()

    def __eq__(self, other: object) -> bool:
        self.reads.note_all()
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self.reads.note_all()
        return super().__repr__()

    def __or__(self, other: Any) -> dict:
        self.reads.note_all()
        return dict(super().items()) | other

    def __ror__(self, other: Any) -> dict:
        self.reads.note_all()
        return other | dict(super().items())

    def popitem(self) -> tuple[Any, Any]:
        self.reads.note_all()
        return super().popitem()

    def copy(self) -> dict:
        self.reads.note_all()
        return dict(super().items())

    def __copy__(self) -> dict:
        return self.copy()

    def __deepcopy__(self, memo: dict) -> dict:
        return copy.deepcopy(self.copy(), memo)

    def __reduce__(self) -> Any:
        return (dict, (self.copy(),))

    def __reversed__(self) -> Iterator[Any]:
        self.reads.note_all()
        return super().__reversed__()
