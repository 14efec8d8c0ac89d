"""``iftgym compare``: the results.json schema, figures redrawn by ``iftgym plot``, one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from iftgym.cli import main
from iftgym.experiments.compare import METRICS
from iftgym.experiments.results import SCHEMA, load_results
from iftgym.io import MANIFEST

SMALL = ["--seeds", "2", "--steps", "4", "--algos", "sft,ift,dpo,ift(gamma=0)"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", *SMALL, "--out", str(out)]) == 0
    return out


def test_results_json_schema(small_run: Path) -> None:
    assert json.loads((small_run / "results.json").read_text())["schema"] == SCHEMA
    results = load_results(small_run / "results.json")
    assert results.world == "frozen-lake"
    assert results.config["seeds"] == 2 and results.config["algos"] == ["sft", "ift", "dpo", "ift(gamma=0)"]
    (entry,) = results.maps
    assert entry.name == "paper" and len(entry.grid.rows) == 6 and list(entry.metrics) == list(METRICS)
    assert set(entry.algorithms) == {"sft", "ift", "dpo", "ift(gamma=0)"}
    assert entry.paired["baseline"] == "sft" and set(entry.references) == {"uniform", "untrained", "demo-copy"}
    for algo, result in entry.trained().items():
        assert set(result.per_seed) == set(METRICS), algo
        for metric, values in result.per_seed.items():
            assert len(values) == 2
            stats = result.summary[metric]
            assert stats["ci95_low"] <= stats["mean"] <= stats["ci95_high"]
            assert stats["mean"] == pytest.approx(np.mean(values))
        assert np.array(result.policies).shape == (2, 36, 4)
        assert result.curves["steps"][-1] == 4 and np.array(result.curves["mse"]).shape[0] == 2
        assert len(result.history["loss"]) == 4  # the training history: every step's loss, mean over seeds
    assert len(entry.trained()["ift"].history["lambda"]) == 4  # a rule's own logged metric reaches the file


def test_figures_written_and_redrawn_by_plot(small_run: Path, tmp_path: Path) -> None:
    names = {"paper-preference.png", "paper-values.png", "paper-explored.png", "paper-curves.png", "paper-why.png"}
    assert names <= {p.name for p in small_run.iterdir()}
    assert main(["plot", str(small_run / "results.json"), "--out", str(tmp_path)]) == 0
    assert names == {p.name for p in tmp_path.iterdir()} - {MANIFEST}
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hidden = [p.name for p in small_run.iterdir() if p.name.startswith(".")]
    assert hidden == [MANIFEST], "no temporary files left behind, only the list of outputs"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algos", "sft,nope"], "unknown rule 'nope'"),
        (["--map", "atlantis"], "unknown map 'atlantis'"),
        (["--seeds", "1"], "seeds=1 is out of range"),
        (["--seeds", "many"], "invalid int value"),
        (["--steps", "0"], "steps=0 is out of range"),
        (["--set", "ift.lam=2"], "lam=2 is out of range"),
        (["--set", "ift.colour=1"], "has no hyper-parameter colour"),
        (["--set", "lam"], "expected RULE.PARAM=VALUE"),
    ],
)
def test_cli_errors_are_one_line_exit_2(args, message, capsys, tmp_path: Path) -> None:
    assert main(["compare", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_unwritable_output_directory(capsys, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["compare", *SMALL, "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not writable" in err


def test_grad_accum_is_checked_against_the_data_before_training(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["compare", "--grad-accum", "2", "--seeds", "2", "--steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "grad_accum=2 is out of range for rule 'sft': expected at most its 1 trajectories" in err, err
    assert err.count("\n") == 1 and not out.exists()
    assert main(["compare", "--grad-accum", "0", "--out", str(out)]) == 2
    assert "grad_accum=0 is out of range" in capsys.readouterr().err
