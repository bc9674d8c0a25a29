"""What a tracing tool would show of an app, as rows to compare native and Teola runs by.

``langchain_run_tree`` flattens a LangChain run (as ``collect_runs`` or LangSmith keep it) into
rows: depth, name, run type, tags, inputs, outputs and whether it failed, children in a fixed
order (LangChain runs parallel steps in any order). Message and run ids, which are fresh on every
run, are left out.
"""

from __future__ import annotations

import re
from typing import Any

_IDS = re.compile(r"(id=|'id': )'(lc_run-|run-)[^']*'")


def _scrubbed(values: Any) -> str:
    return _IDS.sub("", str(values))


def langchain_run_tree(run: Any, depth: int = 0) -> list[tuple]:
    """``run`` and its descendants as comparable rows, depth first, children by name and tags."""
    rows = [(depth, run.name, run.run_type, tuple(sorted(run.tags or [])), _scrubbed(run.inputs),
             _scrubbed(run.outputs), run.error is not None)]
    for child in sorted(run.child_runs, key=lambda c: (c.name, tuple(sorted(c.tags or [])))):
        rows += langchain_run_tree(child, depth + 1)
    return rows
