"""Plain-data values that flow along the edges of a primitive graph.

They are shared by the adapters (which produce them from framework objects) and the runtime
(whose engines consume them), so neither needs to know the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn, framework-free."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Prompt:
    """What an LLM is asked: chat messages (rendered with the model's chat template) or raw text."""

    messages: tuple[ChatMessage, ...] = ()
    text: str | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (not self.messages):
            raise ValueError("a Prompt holds either messages or text, exactly one of them")


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. Greedy (temperature 0) makes optimized and native runs comparable.

    ``max_tokens`` None: up to the end of the context; ``temperature`` None: the engine's default
    (what a user's client that sets none gets from its server). ``json_schema``: the output is JSON
    valid under this JSON schema (its JSON text), by the engine's guided decoding (vLLM's
    structured outputs). ``extra``: further request parameters, sent as they are by an engine on a
    server (``top_p``, ``seed``, ...), as the user's own client sends them; the in-process engine
    refuses them.
    """

    max_tokens: int | None = 128
    temperature: float | None = 0.0
    stop: tuple[str, ...] = ()
    json_schema: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()


class Skipped:
    """The value of a branch that does not run for this query (e.g. no nodes were retrieved).

    A node with a ``Skipped`` input is skipped too, unless its arguments name the input in ``runs_on_skipped``.
    """

    _instance: "Skipped | None" = None

    def __new__(cls) -> "Skipped":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED = Skipped()


@dataclass(frozen=True)
class Failed:
    """The value a node that catches an input's failure (``FnArgs.catches``) reads in its place:
    the exception the failed component raised (its own, unwrapped from Teola's)."""

    error: BaseException


# What adapters render in place of a prompt's late part (the retrieved context) to find its prefix.
CONTEXT_MARK = "\u27e6teola:context\u27e7"


@dataclass(frozen=True)
class PromptPrefix:
    """The part of ``prompt`` (as the engine renders it) that comes before the first ``cut``.

    Adapters build it by rendering the user's own template with a marker where the late part (the
    retrieved context) goes: the prefix is then a true prefix of the final prompt, never a reordering.
    """

    prompt: Prompt
    cut: str
