"""Update fields: the first-order prediction against the measured step, the per-source split, the aggregates and
the update map's artists."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from iftgym import FrozenLakeMDP
from iftgym.explain.canvas import save_figure
from iftgym.explain.update import draw_cell_sources, draw_update_map, draw_update_maps
from iftgym.metrics.update import (
    FieldSummary,
    UpdateField,
    update_field,
)
from iftgym.policies import MLPPolicy

RULES = ("sft", "ift", "dpo", "orpo")


# -- pictures ------------------------------------------------------------------------------------------------------
def hand_made_field(world: FrozenLakeMDP) -> UpdateField:
    """One seed on the 4x4 map: cell 0's own term raises DOWN by 0.3 and lowers LEFT by 0.1; cell 4's term raises
    RIGHT at cell 2 by 0.15 and lowers UP at cell 6 by 0.003 (under 2% of the largest: not drawn); a change in the
    hole at cell 5 is not drawn either."""
    contributions = np.zeros((1, 2, world.n_states, 4))
    contributions[0, 0, 0, [1, 0]] = 0.3, -0.1
    contributions[0, 0, 5, 3] = 0.5
    contributions[0, 1, 2, 2] = 0.15
    contributions[0, 1, 6, 3] = -0.003
    predicted = contributions.sum(1)
    zero = np.zeros_like(predicted)
    return UpdateField("hand", "SGD", 0.1, (0,), np.arange(world.n_states)[:, None], zero - np.log(4), predicted,
                       predicted, np.array([0, 4]), contributions, zero)  # fmt: skip


def widths(collection) -> list[float]:
    return [round(float(np.ptp(path.vertices[:, 0])), 6) for path in collection.get_paths()]


def test_update_map_draws_the_arrows_bars_and_outlines_of_a_known_field(tmp_path):
    world = FrozenLakeMDP.from_map("4x4")
    fig = draw_update_map(hand_made_field(world), world)
    ax = fig.axes[0]
    artists = {artist.get_gid(): artist for artist in ax.collections if artist.get_gid()}
    assert set(artists) == {"reinforced", "suppressed", "own", "carried", "demonstrated"}
    up = artists["reinforced"]  # DOWN at cell 0, full length; RIGHT at cell 2, half length
    np.testing.assert_allclose(up.X, [0, 2]), np.testing.assert_allclose(up.Y, [0, 0])
    np.testing.assert_allclose(up.U, [0, 0.21]), np.testing.assert_allclose(up.V, [0.42, 0])
    np.testing.assert_allclose(up.get_array(), [0.3, 0.15])
    assert (up.norm.vmin, up.norm.vmax) == (-0.3, 0.3)  # the hole's 0.5 sets no scale
    down = artists["suppressed"]  # LEFT at cell 0: from the left side back to the centre
    np.testing.assert_allclose(down.X, [-0.14]), np.testing.assert_allclose(down.U, [0.14])
    np.testing.assert_allclose(down.V, [0]), np.testing.assert_allclose(down.get_array(), [-0.1])
    red, blue = up.to_rgba(up.get_array())[0], down.to_rgba(down.get_array())[0]  # reinforced red, suppressed blue
    assert red[0] > 2 * red[2] and blue[2] > 1.2 * blue[0]
    # the bars: cell 0 all its own, cells 2 and 6 all carried
    assert widths(artists["own"]) == [0.9, 0.0, 0.0] and widths(artists["carried"]) == [0.0, 0.9, 0.9]
    outlined = sorted(
        (round(float(p.vertices[:, 1].min() + 0.45)), round(float(p.vertices[:, 0].min() + 0.45)))
        for p in artists["demonstrated"].get_paths()
    )
    assert outlined == [(0, 0), (1, 0), (2, 0), (2, 1), (3, 1), (3, 2)]  # cells 0, 4, 8, 9, 13, 14
    assert ax.get_title() == "hand: 72% own, 28% carried"
    path = save_figure(fig, tmp_path / "update.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_what_moved_a_cell_is_drawn_from_a_known_field():
    world = FrozenLakeMDP.from_map("4x4")
    field = hand_made_field(world)  # cell 2's change (RIGHT +0.15) is all from cell 4's term
    fig = draw_cell_sources(field, world, 2)
    grid, bars = fig.axes[:2]
    shares = next(image for image in grid.images if image.get_gid() == "shares").get_array()
    assert shares[1, 0] == pytest.approx(1.0) and np.count_nonzero(shares) == 1  # cell 4 (row 1, col 0): 100%
    assert [t.get_text() for t in grid.texts if t.get_gid() == "share"] == ["0%", "100%"]
    picked = next(patch for patch in grid.patches if patch.get_gid() == "cell")
    assert picked.get_xy() == pytest.approx((2 - 0.47, 0 - 0.47))
    assert grid.get_title() == "what moved cell 2: own loss 0%, rest 0%"
    heights = {patch.get_gid(): [] for patch in bars.patches}
    for patch in bars.patches:
        heights[patch.get_gid()].append(round(patch.get_height(), 6))
    # bars per action over (cell 0, cell 4, rest, whole step): RIGHT is 0.15 from cell 4 and in the whole step
    assert heights["action RIGHT"] == [0.0, 0.15, 0.0, 0.15] and heights["action DOWN"] == [0.0, 0.0, 0.0, 0.0]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["cell 0", "cell 4", "rest", "whole step"]


def test_update_maps_of_several_rules_share_one_scale(paper):
    policy = MLPPolicy(paper.n_states, 4, hidden=32, seeds=[0, 1]).double()
    fields = {rule: update_field(rule, policy, paper, lr=1e-2, optimizer="sgd") for rule in ("sft", "ift")}
    fig = draw_update_map(fields, paper)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["sft", "ift"]
    scale = max(np.abs(f.predicted.mean(0)[~paper.terminal]).max() for f in fields.values())
    for ax in panels:
        quiver = next(c for c in ax.collections if c.get_gid() == "reinforced")
        assert quiver.norm.vmax == pytest.approx(scale)
    with pytest.raises(ValueError, match="at least one"):
        draw_update_map({}, paper)


def test_update_maps_over_training_draw_each_panel_on_its_own_scale_from_summaries():
    world = FrozenLakeMDP.from_map("4x4")
    field = hand_made_field(world)
    big = dataclasses.replace(field, rule="big", predicted=10 * field.predicted, contributions=10 * field.contributions)
    rows = {"step 0 (start)": {"hand": field.summary(), "big": big.summary()},
            "step 2 (end)": {"hand": FieldSummary.from_json(field.summary().as_json(), "hand")}}  # fmt: skip
    demonstrated = np.isin(np.arange(16), [0, 4, 8, 9, 13, 14])
    fig = draw_update_maps(rows, world, demonstrated)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().splitlines() for ax in panels] == [
        ["hand: 72% own, 28% carried", "largest |Δ| 3.0e-01"], ["big: 72% own, 28% carried", "largest |Δ| 3.0e+00"],
        ["hand: 72% own, 28% carried", "largest |Δ| 3.0e-01"]]  # fmt: skip
    for ax, scale in zip(panels, (0.3, 3.0, 0.3)):
        quiver = next(c for c in ax.collections if c.get_gid() == "reinforced")
        assert quiver.norm.vmax == pytest.approx(scale)
        np.testing.assert_allclose(quiver.V, [0.42, 0])  # the same arrows: lengths relative to the panel's largest
    assert [ax.get_ylabel() for ax in panels] == ["step 0 (start)", "", "step 2 (end)"]
    assert sum(1 for ax in fig.axes if not ax.axison) == 1  # "big" has no field at the end: an empty panel
    with pytest.raises(ValueError, match="mean over seeds"):
        draw_update_map(field.summary(), world, seed=0)
