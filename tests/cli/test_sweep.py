"""``iftgym sweep``: a spec runs, resumes and reports; ``--report`` rebuilds from the cells; bad input is one line,
exit 2, before any cell runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from iftgym.cli import main

SPEC = """
[base]
algos = ["sft", "ift"]
seeds = 2
steps = 3

[grid]
"ift.lam" = [0.0, 0.5]
"ift.gamma" = [0.0, 0.95]
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(SPEC)
    return path


def test_a_sweep_runs_resumes_and_reports(spec: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "0"]) == 0
    text = capsys.readouterr().out
    assert "4 cells done, 0 finished before and skipped, 0 failed" in text and "equal tuning budget" in text
    figures = {p.name for p in out.glob("*.png")}
    assert figures == {"heatmap-ift.lam-ift.gamma.png", "curve-ift.lam.png", "curve-ift.gamma.png"}
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "0"]) == 0
    assert "0 cells done, 4 finished before and skipped" in capsys.readouterr().out
    for figure in figures:
        (out / figure).unlink()
    assert main(["sweep", "--report", str(out), "--heatmap", "ift.gamma", "ift.lam"]) == 0
    assert "ift: mse per cell" in capsys.readouterr().out and (out / "heatmap-ift.gamma-ift.lam.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a sweep spec to run, or --report FOLDER to rebuild a report: exactly one of them"),
        (["SPEC", "--report", "x"], "exactly one of them"),
        (["SPEC", "--address", "127.0.0.1:6379"], "--address is for --backend ray"),
        (["SPEC", "--workers", "-1"], "workers=-1 is out of range"),
        (["SPEC", "--metric", "speed"], "--metric 'speed' is not measured by these cells"),
        (["SPEC", "--heatmap", "ift.lam", "lr"], "--heatmap axis 'lr' is not an axis of this sweep"),
        (["missing.toml"], "cannot read sweep spec 'missing.toml'"),
        (["--report", "EMPTY"], "has no finished cells: expected a sweep folder"),
    ],
)
def test_bad_sweeps_are_one_line_and_run_nothing(args, message, spec, tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [str(spec) if a == "SPEC" else str(empty) if a == "EMPTY" else a for a in args]
    out = tmp_path / "out"
    assert main(["sweep", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_bad_spec_file_or_value_is_refused_before_any_cell(tmp_path, capsys) -> None:
    for text, message in (("[grid\n", "is not valid TOML"), ('[grid]\n"ift.lam" = [0.5, 3]\n', "sweep cell ift.lam=3")):
        path = tmp_path / "bad.toml"
        path.write_text(text)
        assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ray_backend_without_ray_names_the_install_command(spec, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["sweep", str(spec), "--backend", "ray", "--out", str(tmp_path / "out")]) == 2
    assert 'needs Ray, an optional extra: pip install -e ".[ray]"' in capsys.readouterr().err
