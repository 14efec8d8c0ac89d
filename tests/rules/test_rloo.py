"""RLOO: leave-one-out advantages, the KL-penalised reward, the clipped sequence-level loss on hand-made logits,
seed independence, every policy kind in both worlds, and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym import FrozenLakeMDP
from iftgym.policies import MLPPolicy, TabularPolicy
from iftgym.rules import make_rule
from iftgym.rules.rloo import LeaveOneOutSamples, leave_one_out_advantages
from iftgym.types import StepBatch
from iftgym.world import seed_generators


def test_leave_one_out_advantages() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0, 2.0, 4.0, 6.0, 8.0]])
    # groups of 4: 1 - 0, 0 - 1/3 (x3) | 2 - 6, 4 - 16/3, 6 - 14/3, 8 - 4
    expected = torch.tensor([[1.0, -1 / 3, -1 / 3, -1 / 3, -4.0, -4 / 3, 4 / 3, 4.0]])
    torch.testing.assert_close(leave_one_out_advantages(rewards, 4), expected)
    # groups of 2: r_i - r_j
    torch.testing.assert_close(leave_one_out_advantages(rewards, 2),
                               torch.tensor([[1.0, -1.0, 0.0, 0.0, -2.0, 2.0, -2.0, 2.0]]))  # fmt: skip
    normalized = leave_one_out_advantages(rewards, 4, normalize=True)
    torch.testing.assert_close(normalized, (expected - expected.mean()) / (expected.std() + 1e-4))
    # the leave-one-out advantage is k / (k - 1) times the group-centred reward
    centred = rewards.view(2, 4) - rewards.view(2, 4).mean(-1, keepdim=True)
    torch.testing.assert_close(leave_one_out_advantages(rewards, 4), centred.view(1, 8) * 4 / 3)


# pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
IDS = [[0, 1, 2], [0, 0, 0], [1, 2, 0], [2, 0, 0]]
ACTIONS = [[1, 0, 1], [0, 0, 0], [1, 0, 0], [1, 1, 0]]
LENGTHS = [3, 1, 2, 2]
PROBS = [[3 / 4, 2 / 3, 1 / 2], [1 / 4], [1 / 3, 1 / 2], [1 / 2, 3 / 4]]
SEQUENCE_RATIOS = [1.5, 0.7, 1.1, 0.5]  # pi / pi_old of each whole completion
ADVANTAGES = [0.8, -0.8, -0.3, 0.3]


def hand_samples() -> LeaveOneOutSamples:
    mask = torch.tensor([[t < n for t in range(3)] for n in LENGTHS])
    batch = StepBatch(torch.tensor(IDS)[None], torch.tensor(ACTIONS)[None], mask[None], torch.zeros(1, 4, 3))
    logps = torch.tensor([[sum(math.log(p) for p in probs) for probs in PROBS]])
    old = logps - torch.log(torch.tensor([SEQUENCE_RATIOS]))
    zeros = torch.zeros(1, 4)
    return LeaveOneOutSamples(batch, zeros, zeros, torch.tensor([ADVANTAGES]), old, None)


def test_the_loss_is_the_clipped_surrogate_on_whole_sequences(tabular) -> None:
    policy = tabular(ROWS)
    rule = make_rule("rloo", n_episodes=4, num_generations=2, beta=0.0, epsilon_high=0.28, num_iterations=2)
    rule.samples = hand_samples()
    loss, metrics = rule.loss(policy, None, 1)
    terms = [-min(r * a, min(max(r, 0.8), 1.28) * a) for r, a in zip(SEQUENCE_RATIOS, ADVANTAGES)]
    assert loss.item() == pytest.approx(sum(terms) / 4, rel=1e-5)
    # clipped: ratio 1.5 > 1.28 with A > 0 and ratio 0.7 < 0.8 with A < 0; ratio 0.5 with A > 0 is not (the min
    # keeps the ratio), nor is 1.1
    assert metrics["clip_ratio"].item() == pytest.approx(2 / 4)
    # the clipped completions get no gradient; the others that of rho_i A_i
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    logits = policy.logits.detach().clone().requires_grad_(True)
    logps = torch.log_softmax(logits[0], -1)
    batch = rule.samples.batch
    seq = (logps[batch.ids[0], batch.actions[0]] * batch.mask[0]).sum(-1)
    ratio = torch.exp(seq - rule.samples.old_logps[0])
    adv = torch.tensor(ADVANTAGES)
    unclipped = torch.tensor([False, False, True, True])  # the terms whose min picks the unclipped ratio
    (expected,) = torch.autograd.grad(-(ratio * adv * unclipped).sum() / 4, [logits])
    torch.testing.assert_close(grad, expected)


def test_with_one_iteration_the_gradient_is_reinforce_with_the_leave_one_out_baseline(paper: FrozenLakeMDP) -> None:
    policy = MLPPolicy(paper.n_states, 4, hidden=8, seeds=2)
    rule = make_rule("rloo", n_episodes=8, num_generations=4)
    rule.setup(policy, paper, seed_generators(0, policy.seeds))
    rule.collect(policy, 0)
    loss, metrics = rule.loss(policy, None, 0)
    assert metrics["clip_ratio"].abs().max() == 0
    s = rule.samples
    logps = (torch.log_softmax(policy.logits_at(s.batch.ids), -1).gather(-1, s.batch.actions[..., None])[..., 0]
             * s.batch.mask).sum(-1)  # fmt: skip
    surrogate = -(s.advantages * logps).mean(-1)
    for got, expected in zip(torch.autograd.grad(loss.sum(), list(policy.parameters())),
                             torch.autograd.grad(surrogate.sum(), list(policy.parameters()))):  # fmt: skip
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_the_reward_is_penalised_by_the_summed_kl_of_the_sampling_policy_to_the_reference() -> None:
    world = FrozenLakeMDP.from_map("4x4")
    policy = TabularPolicy(world.n_states, 4, seeds=2, init_std=0.5)
    rule = make_rule("rloo", n_episodes=8, num_generations=4, beta=0.3)
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    reference = torch.log_softmax(policy.logits.detach().clone(), -1)
    with torch.no_grad():
        policy.logits.add_(torch.randn(policy.logits.shape, generator=torch.Generator().manual_seed(1)))
    rule.collect(policy, 0)
    s = rule.samples
    current = torch.log_softmax(policy.logits.detach(), -1)
    seeds = torch.arange(2)[:, None, None]
    per_step = (current - reference)[seeds, s.batch.ids, s.batch.actions] * s.batch.mask
    kl = per_step.sum(-1)
    torch.testing.assert_close(s.kl, kl)
    rewards = s.batch.rewards.sum(-1)
    torch.testing.assert_close(s.penalised, rewards - 0.3 * kl)
    torch.testing.assert_close(s.advantages, leave_one_out_advantages(rewards - 0.3 * kl, 4))
    _, metrics = rule.loss(policy, None, 0)
    torch.testing.assert_close(metrics["kl"], per_step.sum((-2, -1)) / s.batch.mask.sum((-2, -1)))


def test_a_seed_trains_the_same_alone_and_beside_other_seeds_in_the_token_world(seed_independent_on_tokens) -> None:
    seed_independent_on_tokens("rloo", n_episodes=8, num_generations=4)


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
def test_every_grid_policy_trains(kind: str, grid_run) -> None:
    result = grid_run(kind, "sft+rloo(num_iterations=2)", steps=4)
    assert result.history["kl"].shape == (2, 2)


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str, token_run) -> None:
    assert token_run(kind, make_rule("rloo", n_episodes=4), steps=2).history["loss"].shape == (2, 2)


def test_a_run_raises_success_on_the_4x4_map(learns_on_4x4) -> None:
    learns_on_4x4("rloo(num_generations=4)", raises="reward")


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"n_episodes": 9, "num_generations": 2}, "not a multiple of num_generations"),
     ({"num_generations": 1}, "num_generations=1 is out of range"),
     ({"beta": -0.1}, "beta=-0.1 is out of range"),
     ({"num_iterations": 0}, "num_iterations=0 is out of range")],
)  # fmt: skip
def test_bad_settings_are_one_clear_error(settings: dict, message: str, refused) -> None:
    refused("rloo", settings, message)
