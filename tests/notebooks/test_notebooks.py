"""The notebooks run top to bottom at a tiny size on the real CPU engines, so they never rot.

Each notebook asserts inside itself that Teola answers as native; here every cell must run without
error and the figures (latency bars, CDF, graph stages, timeline) must come out as images.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


def test_there_is_a_notebook_for_each_framework() -> None:
    assert [p.name for p in NOTEBOOKS] == ["langchain_latency.ipynb", "llama_index_latency.ipynb"]


@pytest.mark.engines
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_and_draws_its_figures(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEOLA_NOTEBOOK_SIZE", "tiny")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4
    printed = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "same answer" in printed
