"""CHORD: the mu schedule against the official function written out, the mixed loss on hand-made logits (the SFT-phi
term by hand, the GRPO part GRPO's own), the gradients at mu 0 and 1, seed independence, every policy kind in both
worlds, and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym import FrozenLakeMDP
from iftgym.policies import MLPPolicy
from iftgym.rules import make_rule
from iftgym.rules.grpo import GroupSamples, group_advantages
from iftgym.types import StepBatch
from iftgym.world import seed_generators

# pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
PI = [[1 / 4, 3 / 4], [2 / 3, 1 / 3], [1 / 2, 1 / 2]]
# demonstrations: A: inputs 0, 1, 2, actions 1, 0, 1 (p = 3/4, 2/3, 1/2); B: inputs 1, 0, actions 1, 0 (1/3, 1/4)
DEMOS = ([[0, 1, 2], [1, 0, 0]], [[1, 0, 1], [1, 0, 0]], [[True, True, True], [True, True, False]])


def official_mu(step: int, warmup: int, decay: int, peak: float, valley: float) -> float:
    """Trinity-RFT's ``mu_schedule_function``, written out."""
    if step < warmup:
        return (step / warmup) * peak
    if step >= warmup + decay:
        return valley
    return (peak - valley) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / decay)) + valley


@pytest.mark.parametrize(("warmup", "decay", "peak", "valley"), [(50, 100, 0.5, 0.02), (0, 200, 0.9, 0.05),
                                                                   (0, 0, 0.1, 0.1), (3, 0, 0.4, 0.0)])  # fmt: skip
def test_mu_warms_up_then_decays_as_the_official_schedule(warmup: int, decay: int, peak: float, valley: float) -> None:
    rule = make_rule("chord", mu_warmup_steps=warmup, mu_decay_steps=decay, mu_peak=peak, mu_valley=valley)
    for step in range(0, 400, 7):
        assert rule.config.mu_at(step) == pytest.approx(official_mu(step, warmup, decay, peak, valley), abs=1e-12)
    if warmup:  # from 0 up to the peak (without a decay the official function drops to the valley there)
        assert rule.config.mu_at(0) == 0
        assert rule.config.mu_at(warmup) == pytest.approx(peak if decay else valley)


def hand_samples() -> GroupSamples:
    """Two groups of two one-step episodes at input 0 (actions 1, 0 | 0, 1; rewards 1, 0 | 0, 1)."""
    ids, actions = torch.zeros(1, 4, 1, dtype=torch.long), torch.tensor([[[1], [0], [0], [1]]])
    mask = torch.ones(1, 4, 1, dtype=torch.bool)
    rewards = torch.tensor([[[1.0], [0.0], [0.0], [1.0]]])
    total = rewards.sum(-1)
    return GroupSamples(StepBatch(ids, actions, mask, rewards), total, group_advantages(total, 2), None, None)


def chord_rule(name: str, policy):
    rule = make_rule(name)
    rule.setup(policy, FrozenLakeMDP.from_map("4x4"), seed_generators(0, policy.seeds))
    rule.grpo.samples = hand_samples()
    return rule


def hand_sft_phi_tokens(phi: bool) -> list[list[float]]:
    """The SFT term's token losses on DEMOS, ``-p (1 - p) log p`` (``phi``) or ``-log p``, a list per sequence."""
    return [[-(p * (1 - p) if phi else 1.0) * math.log(p) for p in seq] for seq in ([3 / 4, 2 / 3, 1 / 2],
                                                                                     [1 / 3, 1 / 4])]  # fmt: skip


@pytest.mark.parametrize("phi", [True, False])
@pytest.mark.parametrize("average", ["token", "sequence"])
@pytest.mark.parametrize("step", [0, 10, 80, 200])
def test_the_loss_is_one_minus_mu_grpo_plus_mu_sft_phi(
    phi: bool, average: str, step: int, tabular, step_batch, hand_average
) -> None:
    policy = tabular(ROWS)
    rule = chord_rule(f'chord(n_episodes=4, num_generations=2, phi={str(phi).lower()}, sft_average="{average}")',
                      policy)  # fmt: skip
    loss, metrics = rule.loss(policy, step_batch(*DEMOS), step)
    grpo = make_rule("grpo", n_episodes=4, num_generations=2)
    grpo.samples = hand_samples()
    grpo_loss = grpo.loss(policy, None, step)[0].item()
    mu = official_mu(step, 50, 100, 0.5, 0.02)
    sft = hand_average(hand_sft_phi_tokens(phi), average)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx((1 - mu) * grpo_loss + mu * sft, rel=1e-6, abs=1e-9)
    assert metrics["sft_loss"].item() == pytest.approx(sft, rel=1e-6)
    assert metrics["mu"].item() == pytest.approx(mu) and metrics["grpo_loss"].item() == pytest.approx(grpo_loss)
    assert metrics["reward"].item() == 0.5  # GRPO's metrics come along


def test_at_mu_1_the_gradient_is_the_phi_weighted_sfts_and_at_mu_0_grpos(tabular, step_batch) -> None:
    """One demonstrated token (action 1 at input 0, p = 3/4): ``-p (1 - p) (onehot - pi)``."""
    policy = tabular(ROWS)
    one = step_batch([[0]], [[1]], [[True]])
    rule = chord_rule("chord(n_episodes=4, num_generations=2, mu_peak=1.0, mu_valley=1.0, mu_warmup_steps=0)", policy)
    (grad,) = torch.autograd.grad(rule.loss(policy, one, 0)[0].sum(), [policy.logits])
    expected = -(3 / 4) * (1 / 4) * (torch.tensor([0.0, 1.0]) - torch.tensor(PI[0]))
    torch.testing.assert_close(grad[0, 0], expected)
    assert grad[0, 1:].abs().max() == 0
    rule = chord_rule("chord(n_episodes=4, num_generations=2, mu_peak=0.0, mu_valley=0.0)", policy)
    (grad,) = torch.autograd.grad(rule.loss(policy, one, 5)[0].sum(), [policy.logits])
    grpo = make_rule("grpo", n_episodes=4, num_generations=2)
    grpo.samples = hand_samples()
    (grpo_grad,) = torch.autograd.grad(grpo.loss(policy, None, 5)[0].sum(), [policy.logits])
    torch.testing.assert_close(grad, grpo_grad)


def test_groups_are_sampled_as_grpo_samples_them() -> None:
    world = FrozenLakeMDP.from_map("4x4", slippery=True)
    policy = MLPPolicy(world.n_states, 4, hidden=8, seeds=2)
    chord, grpo = make_rule("chord(num_iterations=2)"), make_rule("grpo(num_iterations=2)")
    chord.setup(policy, world, seed_generators(0, policy.seeds))
    grpo.setup(policy, world, seed_generators(0, policy.seeds))
    for step in range(3):
        chord.collect(policy, step)
        grpo.collect(policy, step)
        for a, b in zip(chord.grpo.samples.batch.tensors(), grpo.samples.batch.tensors()):
            assert torch.equal(a, b)
    assert make_rule("chord").data == "demos"  # it needs demonstrations, and samples the world itself


def test_a_seed_trains_the_same_alone_and_beside_other_seeds(seed_independent) -> None:
    seed_independent("sft+chord(mu_warmup_steps=2, mu_decay_steps=5)", slippery=True, atol=1e-5)


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
def test_every_grid_policy_trains(kind: str, grid_run) -> None:
    result = grid_run(kind, "sft+chord(beta=0.05, num_iterations=2)", steps=4)
    assert result.history["mu"].shape == (2, 2)


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str, token_run) -> None:
    rule = make_rule("chord", n_episodes=4, num_generations=2, mu_warmup_steps=1, loss_type="dr_grpo")
    result = token_run(kind, rule, steps=2, batch_size=8)
    assert result.history["mu"][:, 0].tolist() == pytest.approx([0.0, 0.5])


def test_a_run_raises_success_on_the_4x4_map(learns_on_4x4) -> None:
    learns_on_4x4("chord(mu_warmup_steps=10, mu_decay_steps=50)", lowers="nll")


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"mu_peak": 1.5}, r"mu_peak=1\.5 is out of range"),
     ({"n_episodes": 12}, "not a multiple of num_generations"),
     ({"loss_type": "gspo"}, "loss_type='gspo' is not supported")],
)  # fmt: skip
def test_bad_settings_are_one_clear_error(settings: dict, message: str, refused) -> None:
    refused("chord", settings, message)
