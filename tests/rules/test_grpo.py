"""GRPO: group advantages, every loss type's token loss and aggregation on hand-made logits, when groups are sampled,
seed independence, every policy kind in both worlds, and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym.policies import TinyGPT
from iftgym.rules import make_rule
from iftgym.rules.grpo import GroupSamples, group_advantages
from iftgym.types import StepBatch
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.tasks import AdditionTask

# -- advantages ----------------------------------------------------------------------------------------------------


def test_group_advantages_are_relative_to_the_group() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0, 2.0, 4.0, 6.0, 8.0]])  # groups of 4
    # group 1: mean 1/4, Bessel std sqrt(((3/4)^2 + 3 (1/4)^2) / 3) = 1/2; group 2: mean 5, std sqrt(20/3)
    std2 = math.sqrt(20 / 3)
    expected = [0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001,
                -3 / (std2 + 1e-4), -1 / (std2 + 1e-4), 1 / (std2 + 1e-4), 3 / (std2 + 1e-4)]  # fmt: skip
    torch.testing.assert_close(group_advantages(rewards, 4, "group"), torch.tensor([expected]))
    centred = torch.tensor([[0.75, -0.25, -0.25, -0.25, -3.0, -1.0, 1.0, 3.0]])
    torch.testing.assert_close(group_advantages(rewards, 4, "none"), centred)
    batch_std = rewards.std().item()  # Bessel over all 8
    torch.testing.assert_close(group_advantages(rewards, 4, "batch"), centred / (batch_std + 1e-4))
    # an all-equal group has advantage 0 (no signal), not NaN
    assert group_advantages(torch.ones(1, 4), 2).abs().max() == 0


# -- the loss on hand-made logits ------------------------------------------------------------------------------------

# pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2); the reference: pi_ref(.|i) = (1/2, 1/2)
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
# Two groups of two episodes: lengths 3, 1 | 2, 2 (padding after), rewards 1, 0 | 0, 1
IDS = [[0, 1, 2], [0, 0, 0], [1, 2, 0], [2, 0, 0]]
ACTIONS = [[1, 0, 1], [0, 0, 0], [1, 0, 0], [1, 1, 0]]
LENGTHS = [3, 1, 2, 2]
PROBS = [[3 / 4, 2 / 3, 1 / 2], [1 / 4], [1 / 3, 1 / 2], [1 / 2, 3 / 4]]
RATIOS = [[1.5, 0.5, 1.1], [0.7], [1.3, 0.9], [2.0, 0.6]]  # pi / pi_old per token, hand-chosen across the clip range
REWARDS = [1.0, 0.0, 0.0, 1.0]


def hand_samples() -> GroupSamples:
    mask = torch.tensor([[t < n for t in range(3)] for n in LENGTHS])
    rewards = torch.zeros(4, 3)
    for b, n in enumerate(LENGTHS):
        rewards[b, n - 1] = REWARDS[b]
    batch = StepBatch(torch.tensor(IDS)[None], torch.tensor(ACTIONS)[None], mask[None], rewards[None])
    old = torch.zeros(1, 4, 3)
    ref = torch.zeros(1, 4, 3)
    for b, n in enumerate(LENGTHS):
        for t in range(n):
            old[0, b, t] = math.log(PROBS[b][t] / RATIOS[b][t])
            ref[0, b, t] = math.log(1 / 2)
    total = torch.tensor([REWARDS])
    return GroupSamples(batch, total, group_advantages(total, 2), old, ref)


def hand_loss(loss_type: str, beta: float, eps_low: float, eps_high: float, max_length: float) -> float:
    """TRL's formulas, written out token by token in plain Python."""
    a = (1 - 0.5) / (math.sqrt(0.5) + 1e-4)  # each group is (1, 0) or (0, 1): advantages +-a
    advantages = [a, -a, -a, a]
    per_sequence = []
    for b, n in enumerate(LENGTHS):
        tokens = []
        # VESPO's gamma weight of the sequence ratio w (TRL's defaults: k, lambda = 2, 3 for A >= 0, else 3, 2)
        w, (k, lam) = math.prod(RATIOS[b][:n]), (2.0, 3.0) if advantages[b] >= 0 else (3.0, 2.0)
        phi = math.exp(lam + k * math.log(w) - lam * w)
        for t in range(n):
            p, r, adv = PROBS[b][t], RATIOS[b][t], advantages[b]
            if loss_type == "cispo":
                value = -min(r, eps_high) * adv * math.log(p)
            elif loss_type == "sapo":  # TRL's default temperatures: 1.0 for A > 0, else 1.05
                tau = 1.0 if adv > 0 else 1.05
                value = -4 / tau / (1 + math.exp(-tau * (r - 1))) * adv
            elif loss_type == "vespo":
                value = -phi * adv * math.log(p)
            else:
                value = -min(r * adv, min(max(r, 1 - eps_low), 1 + eps_high) * adv)
            log_ref_over_pi = math.log(0.5 / p)
            value += beta * (math.exp(log_ref_over_pi) - log_ref_over_pi - 1)
            tokens.append(value)
        per_sequence.append(tokens)
    total, n_tokens = sum(map(sum, per_sequence)), sum(LENGTHS)
    if loss_type in ("grpo", "sapo"):
        return sum(sum(tokens) / len(tokens) for tokens in per_sequence) / 4
    if loss_type == "luspo":
        return total / 4
    if loss_type == "dr_grpo":
        return total / (4 * max_length)
    return total / n_tokens  # dapo, bnpo, cispo, vespo on one process


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"])
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_each_loss_type_is_trl_s_formula(loss_type: str, beta: float, tabular) -> None:
    policy = tabular(ROWS)
    eps_high = 1.25 if loss_type == "cispo" else 0.28
    rule = make_rule("grpo", n_episodes=4, num_generations=2, loss_type=loss_type, beta=beta, epsilon_high=eps_high,
                     num_iterations=2)  # fmt: skip
    rule.samples = hand_samples()
    loss, metrics = rule.loss(policy, None, 1)
    expected = hand_loss(loss_type, beta, 0.2, eps_high, max_length=3)  # the batch's longest completion
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert ("kl" in metrics) == (beta > 0)
    rule.config.max_completion_length = 10
    assert rule.loss(policy, None, 1)[0].item() == pytest.approx(
        hand_loss(loss_type, beta, 0.2, eps_high, max_length=10), rel=1e-5
    )


def test_a_clipped_token_gets_no_gradient_and_cispo_s_cap_does(tabular) -> None:
    """Ratio 1.5 with a positive advantage: outside PPO's clip range, so no gradient; CISPO caps the ratio's weight
    but keeps ``-sg(min(r, eps)) A grad log p``."""
    policy = tabular(ROWS)
    samples = hand_samples()
    keep = torch.zeros_like(samples.batch.mask)
    keep[0, 0, 0] = True  # only the first token (ratio 1.5, advantage > 0)
    samples.batch = StepBatch(samples.batch.ids, samples.batch.actions, keep, samples.batch.rewards)
    for loss_type, zero in (("dapo", True), ("cispo", False)):
        rule = make_rule("grpo", n_episodes=4, num_generations=2, loss_type=loss_type, num_iterations=2,
                         epsilon_high=1.25 if loss_type == "cispo" else None)  # fmt: skip
        rule.samples = samples
        loss, metrics = rule.loss(policy, None, 1)
        (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
        assert metrics["clip_ratio"].item() == 1.0
        if zero:
            assert grad.abs().max() == 0
        else:
            a = 0.5 / (math.sqrt(0.5) + 1e-4)
            expected = -1.25 * a * (torch.tensor([0.0, 1.0]) - torch.tensor([1 / 4, 3 / 4]))
            torch.testing.assert_close(grad[0, 0], expected)


def test_with_one_iteration_the_ratio_is_one_and_the_gradient_is_the_policy_gradient(tabular) -> None:
    """``num_iterations=1``: TRL's old log-probabilities are the current ones detached, so the loss's gradient is
    ``-sum_t A_i grad log p_t / n`` (dapo) whatever was stored."""
    policy = tabular(ROWS)
    rule = make_rule("grpo", n_episodes=4, num_generations=2)
    samples = hand_samples()
    samples.old_logps = None
    rule.samples = samples
    loss, metrics = rule.loss(policy, None, 0)
    assert metrics["clip_ratio"].item() == 0
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    logits = policy.logits.detach().clone().requires_grad_(True)
    logps = torch.log_softmax(logits[0], -1)[samples.batch.ids[0], samples.batch.actions[0]] * samples.batch.mask[0]
    surrogate = -(samples.advantages[0, :, None] * logps).sum() / sum(LENGTHS)
    (expected,) = torch.autograd.grad(surrogate, [logits])
    torch.testing.assert_close(grad, expected)


# -- sampling, seeds and runs ----------------------------------------------------------------------------------------


def test_groups_share_their_start_and_are_resampled_every_num_iterations_steps() -> None:
    world = TokenWorld(AdditionTask(digits=1, n_train=40, n_test=10, seed=1))
    policy = TinyGPT(world.n_ids, world.block_size, n_layer=1, n_head=2, n_embd=16, seeds=2, device="cpu")
    rule = make_rule("grpo", n_episodes=8, num_generations=4, num_iterations=2)
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    rule.collect(policy, 0)
    first = rule.samples
    batch = first.batch
    assert batch.ids.shape[:2] == (2, 8) and first.old_logps is not None
    for k in range(2):
        starts = batch.mask[k].float().argmax(-1)  # the first answer step: its input is the prompt's last token
        prompts = [tuple(batch.ids[k, b, : starts[b] + 1].tolist()) for b in range(8)]
        assert len(set(prompts[:4])) == 1 and len(set(prompts[4:])) == 1
    rule.collect(policy, 1)
    assert rule.samples is first  # reused for num_iterations steps
    rule.collect(policy, 2)
    assert rule.samples is not first


def test_a_seed_trains_the_same_alone_and_beside_other_seeds_in_the_token_world(seed_independent_on_tokens) -> None:
    seed_independent_on_tokens("grpo", n_episodes=8, num_generations=4, beta=0.1)


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
def test_every_grid_policy_trains(kind: str, grid_run) -> None:
    result = grid_run(kind, "sft+grpo(beta=0.05, num_iterations=2)", steps=4)
    assert result.history["kl"].shape == (2, 2)


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str, token_run) -> None:
    rule = make_rule("grpo", n_episodes=4, num_generations=2, beta=0.05, loss_type="dr_grpo")
    assert token_run(kind, rule, steps=2).history["loss"].shape == (2, 2)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "cispo", "sapo", "luspo", "vespo"])
def test_a_run_raises_success_on_the_4x4_map(loss_type: str, learns_on_4x4) -> None:
    options = ", epsilon_high=5.0" if loss_type == "cispo" else ""
    learns_on_4x4(f'grpo(loss_type="{loss_type}"{options})', raises="reward")


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"n_episodes": 12, "num_generations": 8}, "not a multiple of num_generations"),
     ({"num_generations": 1}, "num_generations=1 is out of range"),
     ({"loss_type": "gspo"}, "loss_type='gspo' is not supported"),
     ({"sapo_temperature_neg": 0.0}, "sapo_temperature_neg=0.0 is out of range"),
     ({"vespo_lambda_pos": -1.0}, "vespo_lambda_pos=-1.0 is out of range"),
     ({"scale_rewards": "std"}, "scale_rewards='std' is not supported"),
     ({"epsilon_high": -1.0}, "epsilon_high=-1.0 is out of range")],
)  # fmt: skip
def test_bad_settings_are_one_clear_error(settings: dict, message: str, refused) -> None:
    refused("grpo", settings, message)
