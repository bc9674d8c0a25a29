"""Errors the runtime raises: each says what went wrong and what to do about it."""

from __future__ import annotations


class TeolaRuntimeError(RuntimeError):
    """Base class of every error raised by ``teola.runtime``."""


class EngineUnavailableError(TeolaRuntimeError):
    """An engine could not start: a package or model is missing. The message names the fix."""


class PrimitiveError(TeolaRuntimeError):
    """A primitive of one query failed inside its engine; ``__cause__`` holds the engine's error."""

    def __init__(self, node: str, op: str, engine: str, cause: BaseException) -> None:
        super().__init__(f"primitive {node!r} ({op} on the {engine} engine) failed: {type(cause).__name__}: {cause}")
        self.node = node
        self.op = op
        self.engine = engine


def original_error(exc: BaseException) -> BaseException:
    """The exception a primitive's own code raised (the framework's, the user's), unwrapped from
    Teola's ``PrimitiveError``: what the native run would have raised. Other exceptions are themselves."""
    while isinstance(exc, PrimitiveError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


class OverloadedError(TeolaRuntimeError):
    """The runtime turned a query away: as many queries as it holds are already running or waiting.
    Retry later (with backoff), send fewer at once, or raise ``QueryLimits.max_waiting``."""


class QueryTimeoutError(TeolaRuntimeError, TimeoutError):
    """A query ran past ``QueryLimits.timeout_s``; its primitives were cancelled and their engine
    requests aborted. The message names the primitives that had not finished."""


class EngineDiedError(TeolaRuntimeError):
    """An engine's process died under a request. The runtime restarts the engine; requests that can
    be repeated without anyone having seen their output are repeated, the others fail with this."""
