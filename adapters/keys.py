"""Stable keys of the user's own objects (stores, models), for the engines built around them."""

from __future__ import annotations

import uuid
import weakref
from typing import Any

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
