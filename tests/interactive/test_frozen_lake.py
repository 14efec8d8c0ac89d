"""The Frozen Lake explorers driven as a user would: set a slider, click a map cell, press a button; the state, the
figures and the messages change as they must."""

from __future__ import annotations

import numpy as np
import pytest

from iftgym.interactive import BiasExplorer, EpisodePlayer, FrozenLakeExplorer
from iftgym.interactive.frozen_lake import BLANK, UpdateExplorer


@pytest.fixture(scope="module")
def explorer() -> FrozenLakeExplorer:
    return FrozenLakeExplorer(algos=("sft", "ift", "dpo"), seeds=2, steps=20)


def test_a_slider_retrains_every_rule_and_redraws(explorer: FrozenLakeExplorer) -> None:
    assert set(explorer.runs) == {"sft", "ift", "dpo"} and explorer.message.value == ""
    assert all(picture.value[:8] == b"\x89PNG\r\n\x1a\n" for picture in explorer.pictures.values())
    before = explorer.runs["ift"].snapshots[-1].copy(), dict(explorer.images)
    sft = explorer.runs["sft"]
    explorer.controls["lam"].value = 0.8  # released: IFT retrains with the new lambda
    assert not np.allclose(explorer.runs["ift"].snapshots[-1], before[0])
    assert explorer.runs["sft"] is sft  # a rule whose settings did not change is not trained again
    explorer.controls["lr"].value = 0.02  # a shared setting: every rule retrains
    assert explorer.runs["sft"] is not sft
    assert explorer.images["preference"] != before[1]["preference"]
    assert "ift" in explorer.table_html and "MSE" in explorer.table_html
    assert explorer.config().rule_overrides["ift"] == {"lam": 0.8, "gamma": 0.95}


def test_the_scrubber_shows_the_policies_as_they_were(explorer: FrozenLakeExplorer) -> None:
    run = explorer.runs["sft"]
    assert run.steps == [0, 10, 20]
    explorer.controls["step"].value = 0
    np.testing.assert_array_equal(explorer.entry().algorithms["sft"].policies, run.snapshots[0])
    start = explorer.images["preference"]
    explorer.controls["step"].value = 20
    assert explorer.images["preference"] != start


def test_a_scrub_redraws_only_the_figures_of_the_shown_step(explorer: FrozenLakeExplorer, monkeypatch) -> None:
    import iftgym.interactive.frozen_lake as module

    drawn: list[str] = []
    run = module.in_background
    monkeypatch.setattr(module, "in_background", lambda tasks, **options: drawn.extend(tasks) or run(tasks, **options))
    explorer.controls["step"].value = 10
    assert drawn == ["preference", "values", "explored"]  # the training curves do not depend on the step
    drawn.clear()
    explorer.controls["lr"].value = 0.015  # a retrain moves the scrubber to the end and draws everything once
    assert sorted(drawn) == ["curves", "explored", "preference", "values"]
    assert explorer.controls["step"].value == 20
    assert explorer.entry().algorithms["sft"].curves == explorer.runs["sft"].curves  # computed where it trained
    assert explorer.runs["sft"].curves["steps"] == [0, 10, 20] and len(explorer.runs["sft"].curves["mse"]) == 2


def test_editing_the_map_retrains_and_an_invalid_map_keeps_the_last_figures(explorer: FrozenLakeExplorer) -> None:
    explorer.load("4x4")
    good = dict(explorer.images)
    explorer.cycle(0)  # the start becomes a goal: two goals, no start
    assert explorer.rows[0][0] == "G" and "start" in explorer.message.value
    assert explorer.images == good  # the last good figures stay
    for _ in range(2):
        explorer.cycle(0)  # G -> F -> H: still no start
    explorer.cycle(0)  # H -> S: valid again
    assert explorer.rows[0][0] == "S" and explorer.message.value == ""
    explorer.cycle(1)  # a hole next to the start
    assert explorer.rows[0][1] == "H" and explorer.model.desc[0][1] == "H" and explorer.controls["map"].value is None
    explorer.controls["random_seed"].value = 3
    explorer.controls["random"].click()
    assert explorer.model.desc == tuple(explorer.rows) and explorer.message.value == ""


def test_the_episode_player_and_the_bias_explorer(explorer: FrozenLakeExplorer) -> None:
    explorer.load("paper")
    player = EpisodePlayer(explorer.model, explorer.model.optimal_matrix)
    assert player.states == [0, 6, 12, 18, 19, 20, 21]  # the optimal route
    first = player.picture.value
    player.step.value = 3
    assert player.picture.value != first
    bias = BiasExplorer(explorer.model, explorer.runs["sft"])
    exact, forced = bias.estimates["exact on-policy"], bias.estimates["teacher-forced (SFT)"]
    assert (forced >= exact - 1e-12).all()  # SFT is optimistic
    bias.step.value = 0
    assert not np.allclose(bias.estimates["exact on-policy"], exact)
    bias.check.click()
    text = bias.intervals.value
    assert "Monte Carlo, 2000 rollouts" in text and "exact inside the interval at" in text
    assert bias.intervals.value.count("<tr>") == 1 + len(explorer.model.optimal_demonstration().actions)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"seeds": 1}, r"seeds=1 is out of range: expected an integer 2 <= seeds <= 50"),
        ({"seeds": 51}, r"seeds=51 is out of range: expected an integer 2 <= seeds <= 50"),
        ({"seeds": 2.5}, r"seeds=2.5 is out of range: expected an integer"),
        ({"steps": 5}, r"steps=5 is out of range: expected an integer 10 <= steps <= 1000"),
        ({"every": 0}, r"every=0 is out of range: expected at least 1"),
        ({"algos": ("sft", "kto")}, r"algos=\('sft', 'kto'\) is not supported: expected a non-empty tuple"),
        ({"algos": ()}, r"algos=\(\) is not supported"),
    ],
)
def test_settings_a_slider_would_clamp_are_refused(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        FrozenLakeExplorer(**settings, train=False)


def test_cells_outside_the_map_and_results_before_training_are_refused() -> None:
    with pytest.raises(TypeError, match=r"^pool='x' is str: expected a WorkerPool or None$"):
        FrozenLakeExplorer(seeds=2, steps=10, train=False, pool="x")
    explorer = FrozenLakeExplorer(seeds=2, steps=10, train=False)
    with pytest.raises(RuntimeError, match="has not trained yet"):
        explorer.entry()
    rows = list(explorer.rows)
    for index in (-1, 36, 1.0, True):
        with pytest.raises(IndexError, match=r"is not a cell of the map: expected an integer 0 <= index < 36 \(the "
                           r"map's 6x6 cells"):  # fmt: skip
            explorer.cycle(index)
    assert explorer.rows == rows  # nothing edited


def test_the_rules_train_the_same_in_the_worker_pool_as_here() -> None:
    pooled = FrozenLakeExplorer(algos=("sft", "ift"), seeds=2, steps=10, workers=1)
    alone = FrozenLakeExplorer(algos=("sft", "ift"), seeds=2, steps=10, workers=0)
    try:
        for algo in ("sft", "ift"):
            np.testing.assert_array_equal(pooled.runs[algo].snapshots, alone.runs[algo].snapshots)
        pooled.controls["lam"].value = 0.7  # a change: the same pool trains again
        alone.controls["lam"].value = 0.7
        np.testing.assert_array_equal(pooled.runs["ift"].snapshots, alone.runs["ift"].snapshots)
    finally:
        pooled.close()


def test_the_player_and_the_bias_explorer_follow_the_explorer_s_map_and_rules() -> None:
    explorer = FrozenLakeExplorer(algos=("sft", "ift"), seeds=2, steps=10, workers=0)
    player, bias = EpisodePlayer.following(explorer, "ift"), BiasExplorer.following(explorer, "sft")
    assert player.label == "ift, seed 0" and bias.label == "sft" and player.model is bias.model is explorer.model
    player.step.value = player.step.max
    bias.check.click()
    first = player.picture.value, bias.picture.value
    explorer.load("4x4")  # a new map: both show it at once
    assert player.model is bias.model is explorer.model and player.model.desc == tuple(explorer.rows)
    assert player.step.value == 0 and player.step.max == len(player.states) - 1 and player.states[0] == 0
    assert bias.step.options == tuple(explorer.runs["sft"].steps) and bias.run is explorer.runs["sft"]
    assert bias.intervals.value == "" and (player.picture.value, bias.picture.value) != first  # stale check cleared
    np.testing.assert_allclose(player.policy[0], explorer.runs["ift"].snapshots[-1][0][0], rtol=1e-6)
    bias.step.value = 0
    explorer.controls["lam"].value = 0.6  # the bias explorer's IFT estimate uses the explorer's lambda
    assert bias.lam == 0.6 and bias.step.value == 0  # at the step it showed: lambda compared where it was
    assert explorer.status.value.startswith("trained 2 rules x 2 seeds")
    explorer.controls["algos"].value = ("sft",)  # IFT deselected: the player shows the first rule that trained
    assert player.label == "sft, seed 0"


def test_cell_labels_are_never_empty_and_match_the_map_after_edits_and_switches() -> None:
    """ipywidgets keeps a button's old label when given "": frozen and hole cells get a non-breaking space."""
    explorer = FrozenLakeExplorer(seeds=2, steps=10, train=False)

    def shown() -> str:
        return "".join(cell.description for cell in explorer.grid.children)

    assert all(cell.description for cell in explorer.cells)
    explorer.rows[0] = "G" + explorer.rows[0][1:]
    explorer.cycle(0)  # G -> F
    assert explorer.cells[0].description == BLANK
    explorer.controls["random_seed"].value = 2
    explorer.load_random()  # the paper map's goal at cell 21 moves to cell 35
    assert shown() == "".join(t if t in "SG" else BLANK for row in explorer.rows for t in row)
    assert explorer.cells[21].description == BLANK and explorer.cells[35].description == "G"
    explorer.load("4x4")
    assert shown() == "".join(t if t in "SG" else BLANK for row in explorer.rows for t in row)


def test_the_table_is_an_html_table() -> None:
    explorer = FrozenLakeExplorer(algos=("sft", "ift"), seeds=2, steps=10, workers=0)
    assert explorer.table.value == explorer.table_html and "<pre" not in explorer.table_html
    assert explorer.table_html.startswith("<div class='iftgym-table'") and explorer.table_html.count("<tr>") == 3


def test_the_update_view_records_a_rule_s_fields_and_shows_what_moved_a_clicked_cell() -> None:
    explorer = FrozenLakeExplorer(algos=("sft", "ift"), seeds=2, steps=40, workers=0)
    view = UpdateExplorer(explorer, "ift")
    assert explorer.field_steps(40) == (0, 10, 20, 30, 40) and list(view.step.options) == [0, 10, 20, 30, 40]
    assert sorted(view.run.fields) == [0, 10, 20, 30, 40] and view.run.fields[0].rule == "ift"
    assert view.images["map"][:8] == b"\x89PNG\r\n\x1a\n" and "cell" not in view.images
    assert "click a cell" in view.status.value
    assert [c.description for c in view.cells[:2]] == ["S", BLANK]
    view.cells[0].click()  # the start cell: what moved it
    assert view.cell == 0 and view.cells[0].style.button_color == "#2ca02c"
    share = view.run.fields[0].moved_by(0).own_share()
    assert f"cell 0: {100 * share:.0f}% of its change from its own loss" in view.status.value
    first = dict(view.images)
    view.step.value = 40  # a later step: Adam's momentum, another picture
    assert view.images["cell"] != first["cell"] and view.images["map"] != first["map"]
    assert "the step taken at step 40" in view.status.value
    # a retrain (ift's lambda) records the fields again, from the same run the explorer shows
    explorer.controls["lam"].value = 0.6
    assert view.run is explorer.runs["ift"] and view.step.value == 40 and view.run.fields[40].rule == "ift"
    # a rule the explorer does not train is trained alone, with the explorer's settings
    view.rule.value = "dpo"
    assert "dpo" not in explorer.runs and sorted(view.run.fields) == [0, 10, 20, 30, 40]
    assert view.run.fields[0].rule == "dpo" and explorer.update_rules == {"dpo"}
    with pytest.raises(IndexError, match="0 <= cell < 36"):
        view.pick(36)
    explorer.controls["policy"].value = "tabular"  # still a field per cell: own cells only for SFT-like rules
    assert view.run.fields and not view.run.fields_skipped
    with pytest.raises(ValueError, match="not supported"):
        UpdateExplorer(explorer, "nope")
