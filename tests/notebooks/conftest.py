"""Running a committed notebook headless, as the notebook tests do."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture
def execute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``execute(name)``: run ``notebooks/name`` top to bottom with small settings (``IFTGYM_NOTEBOOK_SMALL``),
    check it was committed clean and raised nothing, and return its cells' outputs."""

    def run(name: str) -> list[dict]:
        monkeypatch.setenv("IFTGYM_NOTEBOOK_SMALL", "1")
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it clean"
        client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
        client.execute()
        outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
        assert not [out for out in outputs if out.output_type == "error"]
        return outputs

    return run
