"""``iftgym plot``: bad results files are refused in one line with exit 2; every field the figures and tables read
is checked first, so a damaged or crafted file never ends in a traceback."""

from __future__ import annotations

import copy
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from iftgym.cli import main
from iftgym.experiments.compare import CompareConfig, compare
from iftgym.io import MAX_JSON_BYTES, write_json


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


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small comparison's results as ``results.json`` holds them: a 3x3 map with two routes and a one-row map
    where DPO has no pairs (a skipped row)."""
    folder = tmp_path_factory.mktemp("maps")
    (folder / "two-routes.txt").write_text("SFF\nFHF\nFFG\n")
    (folder / "line.txt").write_text("SFG\n")
    config = CompareConfig(maps=[str(folder / "two-routes.txt"), str(folder / "line.txt")], algos=["sft", "dpo"],
                           seeds=2, steps=2)  # fmt: skip
    return json.loads(write_json(compare(config, workers=0).to_json(), folder / "results.json").read_text())


def _plot(capsys, path: Path, out: Path) -> tuple[int, str]:
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("iftgym plot hung"))
    signal.alarm(60)
    try:
        status = main(["plot", str(path), "--out", str(out)])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return status, capsys.readouterr().err


def _assert_refused(status: int, err: str, message: str, out: Path) -> None:
    assert status == 2, err
    assert err.startswith("iftgym: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert len(err) < 300, err
    assert not out.exists()  # refused before anything was written


def test_plot_draws_a_good_file_and_one_of_a_policy_with_memory(results, capsys, tmp_path: Path) -> None:
    good = write_json(results, tmp_path / "results.json")
    assert main(["plot", str(good), "--out", str(tmp_path / "out")]) == 0
    assert {"two-routes-why.png", "line-preference.png"} <= {p.name for p in (tmp_path / "out").iterdir()}
    gru = compare(CompareConfig(maps=["4x4"], algos=["sft"], seeds=2, steps=2, policy="gru"), workers=0)
    assert gru.maps[0].algorithms["sft"].policies is None  # scored from its rollouts: no matrix
    path = write_json(gru.to_json(), tmp_path / "gru.json")
    assert main(["plot", str(path), "--out", str(tmp_path / "gru")]) == 0, capsys.readouterr().err


DEEP = "[" * 100_000 + "]" * 100_000
SFT = ("maps", 0, "algorithms", "sft")
OPTIMAL = ("maps", 0, "optimal")
CRAFTED = [
    # (where, the value put there, what the error says)
    ((*SFT, "policies"), [[0.25] * 4] * 3, "maps[0].algorithms.sft.policies has shape (3, 4): expected (seeds, 9, 4)"),
    ((*SFT, "policies"), None, "maps[0].algorithms.sft.policies is null: expected a list"),
    ((*SFT, "policies"), "uniform", "maps[0].algorithms.sft.policies is a string: expected a list"),
    ((*SFT, "policies"), [], "maps[0].algorithms.sft.policies has shape (0,): expected (seeds, 9, 4)"),
    ((*SFT, "policies"), [[["0.25"] * 4] * 9], "policies is not a list of numbers of shape (seeds, 9, 4)"),
    ((*SFT, "policies"), [[[0.25] * 4] * 9, [[0.25] * 3] * 9], "policies is not a list of numbers"),
    ((*SFT, "policies"), [[[None] * 4] * 9], "policies is not a list of numbers"),
    ((*SFT, "policies"), [[[float("nan")] * 4] * 9], "policies holds a number that is not finite"),
    ((*SFT, "policies"), [[[1.5, -0.5, 0, 0]] * 9], "policies has a row that is not a probability distribution"),
    ((*SFT, "policies"), [[[1e999] * 4] * 9], "policies holds a number that is not finite"),
    ((*SFT, "policies"), "@DEEP@", "is nested too deeply to read"),
    ((*SFT, "policies"), [[[10**400] * 4] * 9], "policies is not a list of numbers"),
    ((*SFT, "summary", "mse", "mean"), "low", "maps[0].algorithms.sft.summary.mse.mean is a string: expected a number"),
    ((*SFT, "summary", "mse"), [], "maps[0].algorithms.sft.summary.mse is a list: expected an object"),
    ((*SFT, "summary"), None, "maps[0].algorithms.sft.summary is null: expected an object"),
    ((*SFT, "wall_time"), None, "maps[0].algorithms.sft.wall_time is null: expected a number"),
    ((*SFT, "curves"), [], "maps[0].algorithms.sft.curves is a list: expected an object"),
    ((*SFT, "curves", "steps"), "12", "maps[0].algorithms.sft.curves.steps is a string: expected a list"),
    ((*SFT, "curves", "mse"), [[0.1] * 7], "maps[0].algorithms.sft.curves.mse has shape (1, 7): expected (seeds, "),
    ((*SFT, "curves", "success"), None, "maps[0].algorithms.sft.curves.success is null"),
    (SFT, None, "maps[0].algorithms.sft is null: expected an object"),
    (SFT, {"curves": {}}, "maps[0].algorithms.sft has neither a summary nor the reason it was skipped"),
    (("maps", 1, "algorithms", "dpo", "skipped"), 5, "maps[1].algorithms.dpo has neither a summary nor the reason"),
    (("maps", 0, "algorithms"), [], "maps[0].algorithms is a list: expected an object"),
    ((*OPTIMAL, "policy"), [[1, 0, 0, 0]] * 8, "maps[0].optimal.policy has shape (8, 4): expected (9, 4)"),
    ((*OPTIMAL, "values"), None, "maps[0].optimal.values is null: expected a list"),
    ((*OPTIMAL, "success"), "1", "maps[0].optimal.success is a string: expected a number"),
    (OPTIMAL, 1, "maps[0].optimal is a number: expected an object"),
    (("maps", 0, "rows"), "paper", "maps[0].rows is a string: expected a list"),
    (("maps", 0, "rows"), ["SFX", "FHF", "FFG"], "maps[0].rows is not a map: invalid tile 'X' at row 0, column 2"),
    (("maps", 0, "rows"), [], "maps[0].rows is not a map: map is empty"),
    (("maps", 0, "name"), None, "maps[0].name is null: expected a string"),
    (("maps", 0, "demonstrated"), [0, 99], "maps[0].demonstrated is not a list of cells"),
    (("maps", 0, "demonstrated"), ["0"], "maps[0].demonstrated is not a list of cells"),
    (("maps", 0, "references"), [], "maps[0].references is a list: expected an object"),
    (("maps", 0, "references", "uniform"), {"per_seed": {}}, "maps[0].references.uniform.summary is missing"),
    (("maps", 0), 7, "maps[0] is a number: expected an object"),
    (("maps",), [], "maps is missing or empty"),
    (("config", "gamma"), 2, "config: gamma=2 is out of range"),
    (("config", "success_rate"), None, "config.success_rate is null: expected a number"),
    (("config", "slippery"), "no", "config.slippery is a string: expected true or false"),
    (("config", "baseline"), ["sft"], "config.baseline is a list: expected a string"),
]


@pytest.mark.parametrize(("where", "value", "message"), CRAFTED, ids=[m for _, _, m in CRAFTED])
def test_plot_refuses_a_crafted_results_file_in_one_line(where, value, message, results, capsys, tmp_path) -> None:
    crafted = copy.deepcopy(results)
    target = crafted
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    path = tmp_path / "results.json"
    path.write_text(json.dumps(crafted).replace('"@DEEP@"', DEEP))
    status, err = _plot(capsys, path, tmp_path / "out")
    _assert_refused(status, err, message, tmp_path / "out")


def test_a_long_algorithm_name_is_cut_in_the_message(results, capsys, tmp_path) -> None:
    crafted = copy.deepcopy(results)
    algorithms = crafted["maps"][0]["algorithms"]
    algorithms["x" * 50_000] = {**algorithms["sft"], "policies": None}
    path = write_json(crafted, tmp_path / "results.json")
    status, err = _plot(capsys, path, tmp_path / "out")
    _assert_refused(status, err, "maps[0].algorithms.'xxxxxxxx", tmp_path / "out")


def test_plot_refuses_a_fifo_and_a_huge_file_before_reading_them(capsys, tmp_path) -> None:
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)
        status, err = _plot(capsys, fifo, tmp_path / "out")
        _assert_refused(status, err, "not a regular file", tmp_path / "out")
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as file:  # sparse: nothing is written, and nothing may be read
        file.truncate(MAX_JSON_BYTES + 1)
    status, err = _plot(capsys, huge, tmp_path / "out")
    _assert_refused(status, err, "bytes: at most", tmp_path / "out")
