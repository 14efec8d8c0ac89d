"""``iftgym plot``: bad results files are refused in one line with exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

from iftgym.cli import main


def test_plot_rejects_bad_results_files(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{broken")
    assert main(["plot", str(bad)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    bad.write_text(json.dumps({"schema": "other"}))
    assert main(["plot", str(bad)]) == 2
    assert "not an iftgym compare result" in capsys.readouterr().err
    assert main(["plot", os.fspath(tmp_path / "missing.json")]) == 2
    assert "cannot read results file" in capsys.readouterr().err
