"""The estimator-bias notebook is committed without outputs and runs headless, top to bottom, in this venv."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "estimator_bias.ipynb"


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), (
        "clear the outputs before committing"
    )
    assert "parameters" in code[0].metadata.get("tags", [])


def test_estimator_bias_notebook_executes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IFTGYM_NOTEBOOK_STEPS", "5")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Check that the kernel "python3" resolves to this interpreter (the venv with iftgym), not another Python.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print('PREFIX=' + sys.prefix)"))
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    elapsed = time.perf_counter() - start
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs)
    assert f"PREFIX={sys.prefix}\n" in text
    assert "max |log-bias - prefix loss|" in text and "lies between SFT's and the truth" in text
    assert len([out for out in outputs if "image/png" in out.get("data", {})]) == 2
    assert elapsed < 60, f"the notebook took {elapsed:.0f} s with small settings"
