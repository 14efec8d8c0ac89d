"""PSFT: PPO's clipped surrogate with advantage 1 on hand-made logits against the formula written out, the
gradient (clipped tokens get none), the old policy refreshed every update_epochs steps, seed independence, every
policy kind in both worlds, and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym.rules import make_rule

# the old policy (as the last refresh found it) and the policy it has moved to since: moved_rule(name, OLD_ROWS, ROWS,
# collect=True) sets the rule up and collects at step 0 on the first, then moves the policy
OLD_ROWS = [[0.0, 0.0], [0.0, math.log(4)], [math.log(3), 0.0]]
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
PI = [[1 / 4, 3 / 4], [2 / 3, 1 / 3], [1 / 2, 1 / 2]]
PI_OLD = [[1 / 2, 1 / 2], [1 / 5, 4 / 5], [3 / 4, 1 / 4]]
# ratios: A: 1/2, 5/12, 2/3 (below 1 - eps: unclipped); B: 10/3 (above 1 + eps: clipped), 3/2 (clipped)
DATA = ([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [0, 1, 0]], [[True, True, True], [True, True, False]])


def hand_tokens(eps: float) -> list[list[float]]:
    """-min(r A, clip(r, 1 - eps, 1 + eps) A) with A = 1, token by token."""
    out = []
    for ids, actions, mask in zip(*DATA):
        ratios = [PI[s][a] / PI_OLD[s][a] for s, a, m in zip(ids, actions, mask) if m]
        out.append([-min(r * 1.0, min(max(r, 1 - eps), 1 + eps) * 1.0) for r in ratios])
    return out


@pytest.mark.parametrize("eps", [0.2, 0.6])
@pytest.mark.parametrize("average", ["sequence", "token"])
def test_the_loss_is_the_clipped_surrogate_with_advantage_1(
    eps: float, average: str, step_batch, moved_rule, hand_average
) -> None:
    rule, policy = moved_rule(f'psft(clip_range={eps}, average="{average}")', OLD_ROWS, ROWS, collect=True)
    loss, metrics = rule.loss(policy, step_batch(*DATA), 1)  # step 1: the old policy is still step 0's
    if average == "sequence":
        clipped = (0 / 3 + 2 / 2) / 2 if eps == 0.2 else (0 / 3 + 1 / 2) / 2
    else:
        clipped = 2 / 5 if eps == 0.2 else 1 / 5
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(hand_average(hand_tokens(eps), average), rel=1e-6)
    assert metrics["clip_fraction"].item() == pytest.approx(clipped)


def test_a_clipped_token_gets_no_gradient_and_the_others_get_the_ratios(step_batch, moved_rule) -> None:
    """``-d min(r, clip(r)) / dz``: 0 above ``1 + eps``, ``-r (onehot - pi)`` elsewhere (``dr = r dlog p``)."""
    for s, a, clipped in ((1, 0, True), (0, 0, False)):  # ratio 10/3 (clipped), 1/2 (below the range: kept)
        rule, policy = moved_rule("psft", OLD_ROWS, ROWS, collect=True)
        loss, _ = rule.loss(policy, step_batch([[s]], [[a]], [[True]]), 1)
        (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
        if clipped:
            assert grad.abs().max() == 0
        else:
            r, onehot = PI[s][a] / PI_OLD[s][a], torch.nn.functional.one_hot(torch.tensor(a), 2).float()
            torch.testing.assert_close(grad[0, s], -r * (onehot - torch.tensor(PI[s])))


def test_the_old_policy_is_refreshed_every_update_epochs_steps(step_batch, moved_rule) -> None:
    rule, policy = moved_rule("psft(update_epochs=2)", OLD_ROWS, ROWS, collect=True)
    data = step_batch(*DATA)
    assert rule.loss(policy, data, 1)[1]["ratio"].item() != pytest.approx(1.0)
    rule.collect(policy, 1)  # not a refresh step
    assert rule.loss(policy, data, 1)[1]["ratio"].item() != pytest.approx(1.0)
    rule.collect(policy, 2)  # the old policy becomes the current one: every ratio is 1
    loss, metrics = rule.loss(policy, data, 2)
    assert metrics["ratio"].item() == pytest.approx(1.0) and loss.item() == pytest.approx(-1.0)
    # and with ratio 1 the gradient is SFT's
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    (sft_grad,) = torch.autograd.grad(make_rule("sft").loss(policy, data, 0)[0].sum(), [policy.logits])
    torch.testing.assert_close(grad, sft_grad)


def test_a_seed_trains_the_same_alone_and_beside_other_seeds(seed_independent) -> None:
    seed_independent("sft+psft", lr=5e-2)


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
def test_every_grid_policy_trains(kind: str, grid_run) -> None:
    result = grid_run(kind, "psft(update_epochs=2)", steps=3)
    assert result.history["loss"].shape == (3, 2)


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str, token_run) -> None:
    ratio = token_run(kind, "psft(update_epochs=2)", steps=3, batch_size=8).history["ratio"]
    assert (ratio[[0, 2]] == 1).all() and (ratio[1] != 1).all()  # refreshed at steps 0 and 2


def test_a_run_lowers_the_loss_and_raises_success_on_the_4x4_map(learns_on_4x4) -> None:
    learns_on_4x4("psft", lowers="nll", success_above=0.9)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"update_epochs": 0}, "update_epochs=0 is out of range"),
        ({"clip_range": 0.0}, r"clip_range=0\.0 is out of range"),
    ],
)
def test_bad_settings_are_one_clear_error(settings: dict, message: str, refused) -> None:
    refused("psft", settings, message)
