"""What both adapters make of the app's own components: which engine each runs on (a binding), the
engine specs an app must start, and stable keys of the user's objects the engines are built around."""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from teola.optimizer.ops import EngineId
from teola.optimizer.values import Sampling
from teola.runtime.registry import EngineSpec


@dataclass(frozen=True)
class EngineBinding:
    """The engine a component's work runs on; ``spec``: the engine the app must start (None: a Teola
    class, on its engine already)."""

    engine: EngineId
    spec: EngineSpec | None = None


@dataclass(frozen=True)
class LLMBinding(EngineBinding):
    """An LLM's binding, with the sampling its calls ask for."""

    sampling: Sampling = Sampling()


def record_spec(engines: list[EngineSpec], spec: EngineSpec | None) -> None:
    """Add ``spec`` to the engines an app needs, once (None: an engine that runs already)."""
    if spec is not None and spec.id not in {known.id for known in engines}:
        engines.append(spec)

_object_keys: dict[int, tuple[weakref.ref, str]] = {}


def object_key(component: Any) -> str:
    """A key of ``component`` (a store, a model) no other object gets, while it lives or after (``id()``
    is reused once an object is gone, so a new one there would be served the old one's engine)."""
    known = _object_keys.get(id(component))
    if known is None or known[0]() is not component:
        for gone in [key for key, (ref, _) in _object_keys.items() if ref() is None]:
            del _object_keys[gone]  # objects that died: their keys are never asked for again
        known = (weakref.ref(component), uuid.uuid4().hex[:12])
        _object_keys[id(component)] = known
    return known[1]
