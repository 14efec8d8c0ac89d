"""iftgym compare / plot: metrics against hand-computed policies, the results.json schema, and CLI errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from iftgym import FrozenLakeMDP
from iftgym.cli import main
from iftgym.experiments.compare import SCHEMA, CompareConfig, compare, load_results

SMALL = ["--seeds", "2", "--steps", "4", "--algos", "sft,ift,dpo"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", *SMALL, "--out", str(out)]) == 0
    return out


def test_metrics_of_hand_computed_policies() -> None:
    model = FrozenLakeMDP.from_map(["SFG"], gamma=0.9)
    optimal = np.array([[0, 0, 1, 0], [0, 0, 1, 0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_array_equal(model.optimal_matrix, optimal)
    uniform = np.full((3, 4), 0.25)
    metrics = model.scores(np.stack([optimal, uniform]))
    # Uniform vs optimal on the two live states: (0.75^2 + 3 * 0.25^2) / 4 per state.
    np.testing.assert_allclose(metrics["mse"], [0.0, 0.1875])
    # Uniform policy: from S, each step moves right w.p. 1/4 (LEFT/UP/DOWN stay or bounce back); it never
    # falls in a hole, so it reaches G with probability 1 eventually.
    np.testing.assert_allclose(metrics["success"], [1.0, 1.0])
    # The greedy version of the uniform policy takes the first best action, LEFT, forever: it never succeeds.
    np.testing.assert_allclose(metrics["greedy_success"], [1.0, 0.0])
    np.testing.assert_allclose(metrics["explored"], [3, 3])


def test_explored_counts_cells_above_the_occupancy_threshold() -> None:
    model = FrozenLakeMDP.from_map("paper")
    _, _, optimal = model.value_iteration(0.95)
    uniform = np.full((model.n_states, 4), 0.25)
    metrics = model.scores(np.stack([optimal, uniform]))
    occupancy = model.occupancy(uniform, 0.95)
    # The optimal policy visits the 7 cells of the short route (the tie at the far corner is never reached).
    assert metrics["explored"][0] == 7
    assert metrics["explored"][1] == (occupancy >= 0.01).sum() > 7


def test_greedy_success_of_a_looping_policy_is_zero() -> None:
    model = FrozenLakeMDP.from_map("paper")
    left = np.tile([1.0, 0, 0, 0], (model.n_states, 1))
    metrics = model.scores(left[None])
    assert metrics["success"][0] == 0.0 and metrics["greedy_success"][0] == 0.0
    assert metrics["mse"][0] > 0


def test_paper_map_second_route_is_the_long_way_round() -> None:
    model = FrozenLakeMDP.from_map("paper")
    assert len(model.second_route()) - 1 == 14 and len(model.optimal_route()) - 1 == 6


def test_results_json_schema(small_run: Path) -> None:
    results = load_results(small_run / "results.json")
    assert results["schema"] == SCHEMA
    assert results["config"]["seeds"] == 2 and results["config"]["algos"] == ["sft", "ift", "dpo"]
    (entry,) = results["maps"]
    assert entry["name"] == "paper" and len(entry["rows"]) == 6
    assert set(entry["algorithms"]) == {"sft", "ift", "dpo"}
    for algo, result in entry["algorithms"].items():
        assert set(result["per_seed"]) == {"mse", "success", "greedy_success", "explored", "bias"}, algo
        for metric, values in result["per_seed"].items():
            assert len(values) == 2
            stats = result["summary"][metric]
            assert stats["ci95_low"] <= stats["mean"] <= stats["ci95_high"]
            assert stats["mean"] == pytest.approx(np.mean(values))
        assert np.array(result["policies"]).shape == (2, 36, 4)
        assert result["curves"]["steps"][-1] == 4 and np.array(result["curves"]["mse"]).shape[0] == 2


def test_results_reproduce_under_the_same_seed() -> None:
    config = CompareConfig(algos=["sft", "ift"], seeds=2, steps=3)
    first, second = compare(config), compare(config)
    for algo in ("sft", "ift"):
        a, b = (r["maps"][0]["algorithms"][algo] for r in (first, second))
        assert a["policies"] == b["policies"] and a["per_seed"] == b["per_seed"]


def test_figures_written_and_redrawn_by_plot(small_run: Path, tmp_path: Path) -> None:
    names = {"paper-preference.png", "paper-values.png", "paper-explored.png", "paper-curves.png"}
    assert names <= {p.name for p in small_run.iterdir()}
    assert main(["plot", str(small_run / "results.json"), "--out", str(tmp_path)]) == 0
    assert names == {p.name for p in tmp_path.iterdir()}
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in small_run.iterdir() if p.name.startswith(".")], "no temporary files left behind"


def test_random_map_sweep_aggregates(tmp_path: Path) -> None:
    config = CompareConfig(algos=["sft", "dpo"], seeds=2, steps=2, random_maps=2, size=5)
    results = compare(config)
    assert [m["name"] for m in results["maps"]] == ["random-5x5-seed0", "random-5x5-seed1"]
    wins = sum(results["across_maps"]["mse"][a]["wins"] for a in results["across_maps"]["mse"])
    assert wins == 2


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
