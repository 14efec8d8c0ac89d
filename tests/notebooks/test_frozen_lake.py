"""The Frozen Lake notebook runs headless from top to bottom with small settings."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "frozen_lake.ipynb"


def test_frozen_lake_notebook_executes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IFTGYM_NOTEBOOK_SMALL", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it clean"
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 5  # preference, value, explored, training-curve and why figures
    text = "".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs)
    assert "MSE" in text and "ift" in text  # the comparison table (its headers wrap at the notebook width)
