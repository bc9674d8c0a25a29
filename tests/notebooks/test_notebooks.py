"""The notebooks run top to bottom at a tiny size on the real CPU engines, so they never rot.

Each notebook asserts inside itself that Teola answers as native; here every cell must run without
error and the figures (latency bars, CDF, graph stages, timeline) must come out as images. The two
notebooks run at once, each in its own kernel (most of each run is waiting on its engines' start).
"""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook_for_each_framework() -> None:
    assert [p.name for p in NOTEBOOKS] == ["langchain_latency.ipynb", "llama_index_latency.ipynb"]


def _execute(path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


@pytest.fixture(scope="module")
def executed() -> dict[str, nbformat.NotebookNode]:
    """Every notebook executed at the tiny size (kernels inherit this process's environment)."""
    before = os.environ.get("TEOLA_NOTEBOOK_SIZE")
    os.environ["TEOLA_NOTEBOOK_SIZE"] = "tiny"
    try:
        with ThreadPoolExecutor(max_workers=len(NOTEBOOKS)) as pool:
            return dict(zip((p.stem for p in NOTEBOOKS), pool.map(_execute, NOTEBOOKS)))
    finally:
        if before is None:
            del os.environ["TEOLA_NOTEBOOK_SIZE"]
        else:
            os.environ["TEOLA_NOTEBOOK_SIZE"] = before


@pytest.mark.engines
@pytest.mark.parametrize("name", [p.stem for p in NOTEBOOKS])
def test_the_notebook_runs_and_draws_its_figures(name: str, executed: dict[str, nbformat.NotebookNode]) -> None:
    notebook = executed[name]
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4
    printed = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "same answer" in printed
