"""iw-SFT: the sequence- and token-level importance weights on hand-made logits against the official formula written
out (clips included), the gradient with the weights constant, the reference frozen at the stage's start, its
log-probabilities computed once per stage training as a reference pass at every step, seed independence, every policy
kind in both worlds, and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym.rules import make_rule
from iftgym.rules.iw_sft import IWSFT, IWSFTConfig

# the reference (the policy as the stage starts) and the policy it has moved to: moved_rule(name, REF_ROWS, ROWS) sets
# the rule up on the first (its frozen copy is the reference), then moves the policy
REF_ROWS = [[0.0, 0.0], [0.0, math.log(4)], [math.log(3), 0.0]]
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
PI = [[1 / 4, 3 / 4], [2 / 3, 1 / 3], [1 / 2, 1 / 2]]
PI_REF = [[1 / 2, 1 / 2], [1 / 5, 4 / 5], [3 / 4, 1 / 4]]
# Sequence A: inputs 0, 1, 2, actions 0, 1, 0 (ratios 1/2, 5/12, 2/3); sequence B: inputs 1, 0, actions 0, 1
# (ratios 10/3, above the token clip, and 3/2), then padding
DATA = ([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [0, 1, 0]], [[True, True, True], [True, True, False]])


def hand_tokens(level: str, temperature: float = 1.0) -> list[list[float]]:
    """``IwSFTLoss`` written out: sequence weight clamp(exp(temp * mean_t(log p - log p_ref)), 0, 16), token weight
    clamp(p / p_ref, 0.2, 1.8), each times -log p."""
    out = []
    for ids, actions, mask in zip(*DATA):
        steps = [(PI[s][a], PI_REF[s][a]) for s, a, m in zip(ids, actions, mask) if m]
        if level == "sequence":
            mean = sum(math.log(p) - math.log(q) for p, q in steps) / len(steps)
            w = min(max(math.exp(temperature * mean), 0.0), 16.0)
            out.append([-w * math.log(p) for p, _ in steps])
        else:
            out.append([-min(max(p / q, 0.2), 1.8) * math.log(p) for p, q in steps])
    return out


@pytest.mark.parametrize("level", ["sequence", "token"])
@pytest.mark.parametrize("average", ["sequence", "token"])
def test_the_loss_is_the_official_formula(level: str, average: str, step_batch, moved_rule, hand_average) -> None:
    rule, policy = moved_rule(f'iw-sft(level="{level}", average="{average}")', REF_ROWS, ROWS)
    loss, _ = rule.loss(policy, step_batch(*DATA), 0)
    assert loss.shape == (1,)
    # "token": the official code's summed weighted token losses over the batch's target tokens
    assert loss.item() == pytest.approx(hand_average(hand_tokens(level), average), rel=1e-6)


def test_the_sequence_weight_is_clipped_at_16_and_temperature_scales_it(step_batch, moved_rule) -> None:
    rule, policy = moved_rule('iw-sft(temperature=8.0, average="token")', REF_ROWS, ROWS)
    loss, _ = rule.loss(policy, step_batch(*DATA), 0)
    tokens = hand_tokens("sequence", 8.0)
    assert loss.item() == pytest.approx(sum(map(sum, tokens)) / 5, rel=1e-6)
    # sequence B: mean log-ratio (log 10/3 + log 3/2) / 2 = log 5 / 2, and exp(8 log 5 / 2) = 625 > 16: clipped
    ratio_b = math.exp(8 * (math.log(10 / 3) + math.log(3 / 2)) / 2)
    assert ratio_b > 16 and tokens[1][0] == pytest.approx(-16 * math.log(2 / 3))


def test_the_weights_get_no_gradient(step_batch, moved_rule) -> None:
    """One token (action 0 at input 1, ratio 10/3): the token weight is clipped to 1.8, the gradient
    ``-1.8 (onehot - pi)``; the sequence weight exp(log 10/3) = 10/3 likewise scales SFT's gradient."""
    data = step_batch([[1]], [[0]], [[True]])
    onehot, pi = torch.tensor([1.0, 0.0]), torch.tensor(PI[1])
    for level, w in (("token", 1.8), ("sequence", 10 / 3)):
        rule, policy = moved_rule(f'iw-sft(level="{level}")', REF_ROWS, ROWS)
        loss, metrics = rule.loss(policy, data, 0)
        (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
        torch.testing.assert_close(grad[0, 1], -w * (onehot - pi))
        assert metrics["weight"].item() == pytest.approx(w, rel=1e-6)
        assert grad[0, [0, 2]].abs().max() == 0


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_at_the_stages_start_every_weight_is_1_and_iw_sft_is_sft(level: str, rule_at_start) -> None:
    rule, policy, data = rule_at_start("iw-sft", level=level)
    loss, metrics = rule.loss(policy, data, 0)
    torch.testing.assert_close(loss, make_rule("sft").loss(policy, data, 0)[0])
    torch.testing.assert_close(metrics["weight"], torch.ones(2))


class PassEveryStep(IWSFT):
    """iw-SFT without the stage's reference log-probabilities computed in ``prepare``: the reference reads every
    step's batch by a forward pass of its own."""

    def prepare(self, policy, data):
        return data


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_the_reference_computed_once_trains_as_a_reference_pass_every_step(level: str, token_run) -> None:
    """Minibatches of 8 of the 40 demonstrations, each in two micro-batches, two TinyGPT seeds: every logged number
    and every weight after 6 steps as with the reference's forward pass at every step (float round-off apart)."""
    runs = [token_run("tiny-gpt", rule(IWSFTConfig(level=level)), steps=6, batch_size=8, grad_accum=2, lr=3e-2)
            for rule in (IWSFT, PassEveryStep)]  # fmt: skip
    cached, uncached = runs
    assert (cached.history["weight"][1:] != 1).all()  # the policy has moved from its reference
    # the steps read no token with the reference (the policy's pass counts twice: its backward pass reads them again)
    assert cached.compute["tokens"] == 2 / 3 * uncached.compute["tokens"]
    for key in uncached.history:
        torch.testing.assert_close(cached.history[key], uncached.history[key])
    for a, b in zip(cached.policy.parameters(), uncached.policy.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_a_seed_trains_the_same_alone_and_beside_other_seeds(level: str, seed_independent) -> None:
    seed_independent(f'sft+iw-sft(level="{level}")')


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
def test_every_grid_policy_trains(kind: str, grid_run) -> None:
    result = grid_run(kind, 'iw-sft(level="token")', steps=3)
    assert result.history["loss"].shape == (3, 2)


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str, token_run) -> None:
    weight = token_run(kind, "iw-sft", steps=2, batch_size=8).history["weight"]
    assert (weight[0] == 1).all() and (weight[1] != 1).all()  # 1 at the start, then the policy has moved


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_a_run_lowers_the_loss_and_raises_success_on_the_4x4_map(level: str, learns_on_4x4) -> None:
    learns_on_4x4(f'iw-sft(level="{level}")', lowers="nll", success_above=0.9)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"level": "batch"}, "level='batch' is not supported"),
        ({"temperature": 0.0}, r"temperature=0\.0 is out of range"),
    ],
)
def test_bad_settings_are_one_clear_error(settings: dict, message: str, refused) -> None:
    refused("iw-sft", settings, message)
