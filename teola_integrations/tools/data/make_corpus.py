"""Build ``python_reference.jsonl``, the demo corpus, from CPython's help topics.

The source is ``pydoc_data.topics.topics`` from the standard library of the
Python that runs this script (the corpus was made with CPython 3.11.7): the
text of "The Python Language Reference" (and a few Library Reference pages)
that ``help()`` shows, under the Python Software Foundation License Version 2.

Each topic is cleaned (rule and underline lines dropped, headings joined to
the paragraph after them, grid tables turned into one line per row, runs of
whitespace in prose and code collapsed to single spaces) and split into chunks
of roughly ``MIN_WORDS``-``MAX_WORDS`` words, breaking between paragraphs where
possible and otherwise between sentences. Each output line is one JSON object
``{"id": "<topic>-<n>", "topic": "<topic>", "text": "..."}``, in topic-name
order, ``n`` counting from 0 within a topic.

Run it with ``python3 make_corpus.py``; the output is deterministic for a
given Python version.
"""

from __future__ import annotations

import json
import re
from itertools import pairwise
from pathlib import Path
from pydoc_data.topics import topics

MIN_WORDS = 120
MAX_WORDS = 180
# A topic's last chunk shorter than this is merged into the one before it,
# provided the merged chunk stays within MAX_WORDS + TAIL_WORDS.
TAIL_WORDS = 60

# Left out, so that the corpus has no duplicated text and 300-450 chunks:
# "specialnames" and "compound" repeat most of the text of smaller topics that
# are kept ("customization", "attribute-access", "sequence-types", ... and
# "if", "while", "for", "try", "with", "function", "class", "async"), and
# "debugger" documents the pdb module rather than the language. Every
# paragraph of the others is also in a topic that is kept ("naming",
# "exceptions" and "dynamic-features" in "execmodel", "in" in "comparisons",
# "augassign" in "assignment", "id-classes" in "identifiers",
# "typesseq-mutable" in "typesseq", and "else" is the same text as "if").
SKIPPED_TOPICS = frozenset(
    {
        "specialnames",
        "compound",
        "debugger",
        "naming",
        "exceptions",
        "dynamic-features",
        "in",
        "augassign",
        "id-classes",
        "typesseq-mutable",
        "else",
    }
)

OUTPUT = Path(__file__).with_name("python_reference.jsonl")

_RULE_CHARS = frozenset("*=-~^+|")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(*])")
_WRAPPED_HYPHEN = re.compile(r"(?<=[A-Za-z]-)\n(?=[A-Za-z])")
_RUBRIC = re.compile(r"-\[ (.*) \]-")  # e.g. "-[ Footnotes ]-"


def _is_rule(line: str) -> bool:
    """Whether a stripped line is pure decoration, such as ``*****`` or ``+---+``."""
    return len(line) >= 3 and set(line) <= _RULE_CHARS | {" "}


def _join_lines(lines: list[str]) -> str:
    """Join wrapped lines into one, with runs of whitespace collapsed.

    A word hyphenated across a line break (``non-`` / ``virtual``) is joined
    back without a space.
    """
    return " ".join(_WRAPPED_HYPHEN.sub("", "\n".join(lines)).split())


def _table_row(lines: list[str], rule: str) -> str:
    """Join the lines of one grid-table row into ``cell | cell | ...``.

    ``rule`` is the table's ``+---+---+`` line, whose ``+`` signs mark the
    column edges.
    """
    edges = [i for i, ch in enumerate(rule) if ch == "+"]
    cells = [
        _join_lines([line[start + 1 : end].strip() for line in lines])
        for start, end in pairwise(edges)
    ]
    return " | ".join(cell for cell in cells if cell)


def paragraphs(text: str) -> list[str]:
    """Split a topic into cleaned paragraphs, whitespace collapsed.

    A heading (a line underlined by a rule, or a ``-[ rubric ]-``) is prefixed
    to the paragraph that follows it, and each grid-table row becomes a
    paragraph of its own.
    """
    result: list[str] = []
    block: list[str] = []
    heading = ""
    table_rule = ""
    row: list[str] = []

    def add(paragraph: str) -> None:
        nonlocal heading
        if paragraph:
            result.append(f"{heading}: {paragraph}" if heading else paragraph)
            heading = ""

    def end_block() -> None:
        add(_join_lines(block))
        block.clear()

    def end_row() -> None:
        if row:
            add(_table_row(row, table_rule))
            row.clear()

    for line in text.expandtabs().splitlines():
        stripped = line.strip()
        if table_rule and stripped.startswith("|") and not stripped.startswith("|="):
            row.append(line)
        elif stripped.startswith("+") and _is_rule(stripped):
            end_block()
            end_row()
            table_rule = line
        elif stripped.startswith("|=") and _is_rule(stripped):
            end_row()
        elif _is_rule(stripped):
            # An underline: the block read so far is a heading.
            heading = ": ".join(filter(None, [heading, _join_lines(block)]))
            block.clear()
        elif rubric := _RUBRIC.fullmatch(stripped):
            end_block()
            heading = rubric[1]
        else:
            end_row()
            table_rule = ""
            if stripped:
                block.append(stripped)
            else:
                end_block()
    end_row()
    end_block()
    return result


def _units(paragraph: str) -> list[str]:
    """Split a paragraph into sentences, and any over-long sentence into word runs."""
    units: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        units.extend(" ".join(words[i : i + MAX_WORDS]) for i in range(0, len(words), MAX_WORDS))
    return units


def chunk_topic(text: str) -> list[str]:
    """Split one topic's text into chunks of about MIN_WORDS-MAX_WORDS words.

    Chunks end at a paragraph break once they hold MIN_WORDS words, and at a
    sentence break when the next sentence would take them past MAX_WORDS.
    """
    chunks: list[str] = []
    current = ""
    count = 0

    def flush() -> None:
        nonlocal current, count
        if current.strip():
            chunks.append(current.strip())
        current, count = "", 0

    for paragraph in paragraphs(text):
        units = _units(paragraph)
        for index, unit in enumerate(units):
            words = len(unit.split())
            if count and count + words > MAX_WORDS:
                flush()
            current += unit + ("\n\n" if index == len(units) - 1 else " ")
            count += words
        if count >= MIN_WORDS:
            flush()
    flush()

    if len(chunks) > 1:
        tail = len(chunks[-1].split())
        if tail < TAIL_WORDS and len(chunks[-2].split()) + tail <= MAX_WORDS + TAIL_WORDS:
            chunks[-2:] = [chunks[-2] + "\n\n" + chunks[-1]]
    return chunks


def build() -> list[dict[str, str]]:
    """All chunks of all kept topics, in topic-name order."""
    return [
        {"id": f"{topic}-{n}", "topic": topic, "text": text}
        for topic in sorted(topics)
        if topic not in SKIPPED_TOPICS
        for n, text in enumerate(chunk_topic(topics[topic]))
    ]


def main() -> None:
    """Write the corpus next to this script and report its size."""
    chunks = build()
    with OUTPUT.open("w", encoding="utf-8", newline="\n") as f:
        for chunk in chunks:
            f.write(json.dumps(chunk, ensure_ascii=False) + "\n")
    print(f"wrote {len(chunks)} chunks to {OUTPUT}")


if __name__ == "__main__":
    main()
