"""The analysis notebooks run top to bottom at smoke size, and are committed with outputs."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_the_four_analyses():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs_of_a_real_run(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.get("execution_count") for cell in code), "run it before committing"
    assert not any(o.get("output_type") == "error" for cell in code for o in cell.outputs)
    conclusions = notebook.cells[-1]
    assert conclusions.cell_type == "markdown" and "Conclusions" in conclusions.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom_at_smoke_size(path, tmp_path, monkeypatch):
    monkeypatch.setenv("XPAY_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("XPAY_NOTEBOOK_OUT", str(tmp_path))
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    print(f"{path.name}: {time.perf_counter() - started:.1f} s at smoke size")
    assert any(p.name == "sweep.parquet" for p in tmp_path.rglob("*")) or path.stem.startswith("01")
