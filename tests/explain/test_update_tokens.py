"""Update strips' pictures: a hand-made strip's labels, colours, bars and titles, read from the figure's artists."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from iftgym.explain.canvas import figure_png
from iftgym.explain.update_tokens import (
    NEGATIVE_WEIGHT,
    POSITIVE_WEIGHT,
    draw_token_update,
    draw_token_updates,
    shown_token,
)
from iftgym.metrics.update_tokens import TokenStrip, token_update
from iftgym.policies.registry import build_policy
from iftgym.worlds.registry import make_world


def hand_made_strip() -> TokenStrip:
    """Three positions, targets "4", " " and <eos>: position 0 raises "4" by 0.2 and "5" by 0.05 and lowers "9" by 0.1;
    position 1 raises nothing and lowers "x" by 0.4 (the largest change); position 2 raises <eos> by 0.1. The weights
    are 0.5, -0.25 and 1."""
    weights = np.array([0.5, -0.25, 1.0])
    return TokenStrip(
        rule="hand", prompt="2+2=", answer="4 ", tokens=("4", " ", "<eos>"), weights=weights,
        weights_per_seed=weights[None], probability=np.array([0.1, 0.2, 0.3]), predicted=np.array([0.2, 0.0, 0.1]),
        measured=np.array([0.2, 0.0, 0.1]),
        reinforced=((("4", 0.2), ("5", 0.05)), (), (("<eos>", 0.1),)), suppressed=((("9", -0.1),), (("x", -0.4),), ()),
    )  # fmt: skip


def panel_axes(fig):
    """The first panel's weight and token axes (the colour bar's axes come last)."""
    weight_ax, token_ax, *_ = fig.axes
    return weight_ax, token_ax


def texts(ax, gid: str) -> dict[tuple[int, int], tuple[str, str]]:
    """``{(column, row): (label, weight)}`` of the axes' texts with this gid."""
    return {tuple(map(round, t.get_position())): (t.get_text(), t.get_fontweight()) for t in ax.texts
            if t.get_gid() == gid}  # fmt: skip


def test_a_hand_made_strip_is_drawn_with_its_tokens_changes_and_weights():
    fig = draw_token_updates({"step 0": {"hand": hand_made_strip()}}, top=2)
    weight_ax, token_ax = panel_axes(fig)
    assert [t.get_text() for t in token_ax.get_xticklabels()] == ["4", "␣", "<eos>"]
    # reinforced in rows 0-1 (largest first), suppressed in rows 2-3 (largest last); the target in bold
    assert texts(token_ax, "reinforced") == {(0, 0): ("4", "bold"), (0, 1): ("5", "normal"),
                                             (2, 0): ("<eos>", "bold")}  # fmt: skip
    assert texts(token_ax, "suppressed") == {(0, 3): ("9", "normal"), (1, 3): ("x", "normal")}
    (image,) = [im for im in token_ax.get_images() if im.get_gid() == "changes"]
    values = image.get_array().filled(np.nan)
    expected = np.array([[0.2, np.nan, 0.1], [0.05, np.nan, np.nan], [np.nan, np.nan, np.nan], [-0.1, -0.4, np.nan]])
    np.testing.assert_allclose(values, expected / 0.4)
    red, blue = (image.cmap(image.norm(values[row, col])) for row, col in ((0, 0), (3, 1)))
    assert red[0] > red[2] and blue[2] > blue[0]  # raised: red; lowered: blue
    assert blue[2] > 0.9 * max(image.cmap(1.0)[:3])  # the largest change is the scale's end
    bars = [p for p in weight_ax.patches if p.get_gid() == "weight"]
    assert [b.get_height() for b in bars] == [0.5, -0.25, 1.0]
    assert [b.get_facecolor() for b in bars] == [to_rgba(c) for c in (POSITIVE_WEIGHT, NEGATIVE_WEIGHT,
                                                                      POSITIVE_WEIGHT)]  # fmt: skip
    assert weight_ax.get_title() == "hand: '2+2='\nlargest |Δ| 4.0e-01"


def test_panels_follow_rows_and_labels_and_a_missing_rule_leaves_a_gap():
    strip = hand_made_strip()
    fig = draw_token_updates({"step 0": {"sft": strip, "ift": strip}, "step 4": {"ift": strip}})
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes if ax.get_title()]
    assert titles == ["sft (hand): '2+2='", "ift (hand): '2+2='", "ift (hand): '2+2='"]
    rows = [t.get_text() for t in fig.texts if t.get_text().startswith("step")]
    assert rows == ["step 0", "step 4"]
    with pytest.raises(ValueError, match="no update strip"):
        draw_token_updates({})


def test_a_strip_where_no_token_moves_says_so():
    still = TokenStrip("hand", "1+1=", "2", ("2", "<eos>"), np.zeros(2), np.zeros((1, 2)), np.full(2, 0.5),
                       np.zeros(2), np.zeros(2), ((), ()), ((), ()))  # fmt: skip
    _, token_ax = panel_axes(draw_token_updates({"step 0": {"hand": still}}))
    assert "no token moves" in [t.get_text() for t in token_ax.texts]


def test_white_space_is_made_visible():
    assert [shown_token(t) for t in (" ", "a\n", "")] == ["␣", "a⏎", "∅"]


def test_a_steps_strips_are_drawn_from_the_update_itself():
    world = make_world("tokens", task="addition", task_args={"digits": 1}, n_train=4, n_test=1)
    policy = build_policy("tiny-gpt", world.n_ids, world.n_actions, [0], block_size=world.block_size, n_layer=1,
                          n_head=2, n_embd=8)  # fmt: skip
    update = token_update("sft", policy, world, examples=world.task.train[:2])
    fig = draw_token_update(update, world)
    token_axes = [ax for ax in fig.axes if ax.get_images()]
    assert len(token_axes) == 2  # a row per shown prompt
    targets = [world.action_name(int(v)) for v in update.targets[update.sequence == 1]]
    assert [t.get_text() for t in token_axes[1].get_xticklabels()] == targets
    assert figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
