"""The demo corpus (The Python Language Reference, PSF License 2.0) and questions answered in it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Chunk:
    """One chunk of the corpus."""

    id: str
    topic: str
    text: str


@dataclass(frozen=True)
class Question:
    """A question and the ids of the chunks that answer it."""

    question: str
    answer_chunk_ids: tuple[str, ...]


def load_corpus(limit: int | None = None) -> list[Chunk]:
    """The corpus chunks, in file order (the first ``limit`` if given)."""
    with open(_HERE / "python_reference.jsonl", encoding="utf-8") as f:
        chunks = [Chunk(**json.loads(line)) for line in f if line.strip()]
    return chunks[:limit] if limit else chunks


def load_questions() -> list[Question]:
    """The demo questions."""
    raw = json.loads((_HERE / "questions.json").read_text(encoding="utf-8"))
    return [Question(q["question"], tuple(q["answer_chunk_ids"])) for q in raw]
