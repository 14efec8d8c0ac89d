"""``iftgym compare --update-maps``: update fields at the start, middle and end of training, kept in results.json
(numbers and the small arrays the maps are drawn from), drawn as OUT/<map>-update.png, redrawn by ``iftgym plot``,
printed as a table; one-line errors with exit 2. In the token world (``iftgym lm --update-maps``): update strips,
kept in results.json, drawn as OUT/<task>-update.png and redrawn by ``iftgym plot``."""

from __future__ import annotations

import copy
import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from iftgym.cli import main
from iftgym.experiments.compare import SB3_NO_UPDATE, compare
from iftgym.experiments.config import CompareConfig
from iftgym.experiments.results import CompareResult, load_results
from iftgym.explain.tables import update_rows
from iftgym.explain.update_tokens import shown_token, update_strips_figure
from iftgym.worlds.registry import make_world


@pytest.fixture(scope="module")
def small() -> CompareResult:
    return compare(CompareConfig(seeds=2, steps=4, algos=["sft", "ift", "dpo", "sft+dpo"], update_maps=True),
                   workers=0)  # fmt: skip


def test_results_keep_the_numbers_and_read_back(small: CompareResult) -> None:
    (entry,) = small.maps
    for algo, run in entry.trained().items():
        assert [p["step"] for p in run.update["points"]] == [0, 2, 4], algo
        for point in run.update["points"]:
            mse = point["mse"]
            assert np.array(point["field"]["predicted"]).shape == (36, 4)
            if mse["rest_share"] is not None:  # shares of the sources and of the rest (momentum) sum to 1
                assert sum(v for v in mse["shares"].values()) + mse["rest_share"] == pytest.approx(1, abs=1e-6)
    assert [p["rule"] for p in entry.trained()["sft+dpo"].update["points"]] == ["sft", "dpo", "dpo"]
    assert [p["stage"] for p in entry.trained()["sft+dpo"].update["points"]] == [1, 2, 2]
    steps = [point["step"] for point in entry.update["alignment"]]
    assert steps == [0, 2, 4] and entry.update["alignment"][0]["pairs"]["sft | sft+dpo"]["all"] == pytest.approx(1)
    data = json.loads(json.dumps(small.to_json(), allow_nan=False))
    back = CompareResult.from_json(data)
    assert back.maps[0].update == entry.update
    assert all(back.maps[0].trained()[a].update == r.update for a, r in entry.trained().items())


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("algorithms", "sft", "update", "points", 0, "step"), -1, "points[0].step is a number: expected an integer"),
        (("algorithms", "sft", "update", "points", 0, "field", "own"), [[0.0] * 4], "field.own has shape"),
        (("algorithms", "sft", "update", "points", 0, "mse", "shares"), {"99": 0.5}, "expected cells from 0 to 35"),
        (("algorithms", "ift", "update"), {"skipped": 3}, "update.skipped is a number"),
        (("update", "alignment", 0, "pairs", "sft | ift", "all"), 1.5, "expected a cosine in [-1, 1]"),
    ],
)
def test_a_damaged_update_is_one_error_naming_the_field(small: CompareResult, path, value, message) -> None:
    data = copy.deepcopy(small.to_json())
    target = data["maps"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        CompareResult.from_json(data)


def test_without_update_maps_nothing_is_added(small: CompareResult) -> None:
    data = copy.deepcopy(small.to_json())
    for run in data["maps"][0]["algorithms"].values():
        del run["update"]
    del data["maps"][0]["update"]
    back = CompareResult.from_json(data)
    assert back.maps[0].update is None and all(r.update is None for r in back.maps[0].trained().values())
    assert '"update":' not in json.dumps(back.to_json())


# -- the command line -----------------------------------------------------------------------------------------------
ALGOS = ["--algos", "sft,ift,dpo,sb3-ppo", "--sb3-timesteps", "64"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("update-maps")
    console = io.StringIO()
    with redirect_stdout(console):
        assert main(["compare", "--update-maps", "--seeds", "2", "--steps", "4", *ALGOS, "--out", str(out)]) == 0
    return out, console.getvalue()


def test_compare_writes_the_update_map_the_numbers_and_the_table(cli_run: tuple[Path, str]) -> None:
    out, printed = cli_run
    assert (out / "paper-update.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    entry = load_results(out / "results.json").maps[0]
    assert entry.trained()["sb3-ppo"].update == {"skipped": SB3_NO_UPDATE}
    for algo in ("sft", "ift", "dpo"):
        points = entry.trained()[algo].update["points"]
        assert [p["step"] for p in points] == [0, 2, 4]
        for point in points:
            mse = point["mse"]
            assert mse["own_share"] + mse["carried_share"] + mse["rest_share"] == pytest.approx(1, abs=1e-6)
            parts = sum(mse["by_source"].values()) + mse["rest"]
            assert parts == pytest.approx(mse["mse_rest_change"], rel=1e-6, abs=1e-15)
            predicted, own, carried = (np.array(point["field"][k]) for k in ("predicted", "own", "carried"))
            # the rest (float32 rounding of a fresh optimiser; Adam's momentum later) is the difference
            scale = np.abs(predicted).max()
            np.testing.assert_allclose(own + carried, predicted, atol=(1e-4 if point["step"] == 0 else 1) * scale)
    assert "each algorithm's next optimiser step" in printed and "cos to sft" in printed


def test_plot_redraws_the_update_map(cli_run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = cli_run
    assert main(["plot", str(out / "results.json"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "paper-update.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_tabular_policy_under_sft_carries_nothing(tmp_path: Path) -> None:
    args = ["compare", "--update-maps", "--policy", "tabular", "--algos", "sft,ift", "--seeds", "2", "--steps", "2"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    entry = load_results(tmp_path / "results.json").maps[0]
    for point in entry.trained()["sft"].update["points"]:
        assert point["own_fraction"] == 1.0 and not np.array(point["field"]["carried"]).any()
        assert point["mse"]["mse_rest_change"] == 0 and point["mse"]["carried_share"] is None  # no cell is reached
    ift = entry.trained()["ift"].update["points"][0]
    assert ift["own_fraction"] < 1  # IFT's mixed input reaches the successors of wrong predictions
    header, rows = update_rows(entry)
    sft_row = rows[0]
    assert sft_row[:2] == ["sft", "0"] and sft_row[header.index("carried")] == "0%"
    assert sft_row[header.index("(0,0)")] == "-"  # the step does not change the untrained cells' MSE


def test_update_maps_where_they_cannot_be_taken_is_one_line_exit_2(capsys, tmp_path: Path) -> None:
    assert main(["compare", "--update-maps", "--policy", "gru", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "update_maps=True needs a Markov policy" in err and "Traceback" not in err


# -- the token world: update strips ----------------------------------------------------------------------------------
LM = ["lm", "--update-maps", "--algo", "sft,dft,ift,grpo", "--seeds", "2", "--steps", "4", "--task-arg", "digits=1",
      "--train-size", "8", "--test-size", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size",
      "4", "--reward", "token", "--strips", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("update-strips")
    with redirect_stdout(io.StringIO()):
        assert main([*LM, "--out", str(out)]) == 0
    return out


def test_lm_writes_the_update_strips_and_their_numbers(lm_run: Path) -> None:
    assert (lm_run / "addition-update.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    entry = load_results(lm_run / "results.json").maps[0]
    world = make_world("tokens", task="addition", task_args={"digits": 1}, n_train=8, n_test=2)
    example = world.task.train[0]
    tokens = [world.action_name(int(v)) for v in world.answer_ids(example.completion, example.prompt)]
    for algo in ("sft", "dft", "ift", "grpo"):
        update = entry.trained()[algo].update
        assert [p["step"] for p in update["points"]] == [0, 2, 4] and update["seconds"] > 0, algo
        for point in update["points"]:
            assert point["rule"] == algo and point["agreement"]["cosine"] > 0.5
            (strip,) = point["strips"]
            assert strip["prompt"] == example.prompt and strip["tokens"] == tokens
            assert np.array(strip["weights_per_seed"]).shape == (2, len(tokens))
    for point in entry.trained()["sft"].update["points"]:  # each of the batch's 4 answers, averaged over its tokens
        np.testing.assert_allclose(point["strips"][0]["weights"], 1 / (4 * len(tokens)), rtol=1e-5)
    dft = entry.trained()["dft"].update["points"][0]["strips"][0]
    np.testing.assert_allclose(dft["weights"], np.array(dft["probability"]) / (4 * len(tokens)), rtol=1e-4)


def test_plot_redraws_the_update_strips(lm_run: Path, tmp_path: Path) -> None:
    with redirect_stdout(io.StringIO()):
        assert main(["plot", str(lm_run / "results.json"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "addition-update.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = load_results(lm_run / "results.json")
    fig = update_strips_figure(results)
    assert [t.get_text() for t in fig.texts if t.get_text().startswith("step")] == ["step 0", "step 2", "step 4"]
    titles = [ax.get_title().split(":")[0] for ax in fig.axes if ax.get_title()]
    assert titles == ["sft", "dft", "ift", "grpo"] * 3
    strip = results.maps[0].trained()["ift"].update["points"][0]["strips"][0]
    token_axes = [ax for ax in fig.axes if ax.get_images()]
    assert [t.get_text() for t in token_axes[2].get_xticklabels()] == [shown_token(t) for t in strip["tokens"]]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("strips", 0, "tokens"), [1, 2], "strips[0].tokens is not a list of strings"),
        (("strips", 0, "weights"), [0.5], "strips[0].weights has shape (1,)"),
        (("strips", 0, "reinforced"), [[["1", "big"]]], "strips[0].reinforced is not a list of [token, change] pairs"),
        (("agreement", "slope"), "1", "agreement.slope is a string"),
    ],
)
def test_a_damaged_update_strip_is_one_error_naming_the_field(lm_run: Path, path, value, message) -> None:
    data = json.loads((lm_run / "results.json").read_text())
    target = data["maps"][0]["algorithms"]["sft"]["update"]["points"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        CompareResult.from_json(data)
