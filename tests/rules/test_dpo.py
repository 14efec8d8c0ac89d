"""DPO and online DPO: the loss against hand values, TRL's metrics, and fresh samples from the current policy."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym import FrozenLakeMDP, PairBatch, StepBatch
from iftgym.policies import MLPPolicy
from iftgym.rules import make_rule
from iftgym.rules.common import sequence_logps
from iftgym.rules.dpo import dpo_loss

LN2 = math.log(2)


def test_dpo_loss_hand_values() -> None:
    zero = torch.zeros(3)
    losses, chosen, rejected = dpo_loss(zero, zero, zero, zero, beta=0.1)
    torch.testing.assert_close(losses, torch.full((3,), LN2))
    # logits z = (pi_w - pi_l) - (ref_w - ref_l) = (-1 + 3) - 0 = 2, beta z = 1.
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0))
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert chosen.item() == pytest.approx(0.5 * (-1 + 2))
    assert rejected.item() == pytest.approx(0.5 * (-3 + 2))
    for eps in (0.1, 0.3):
        smoothed, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=eps)
        expected = (1 - eps) * math.log(1 + math.exp(-1)) + eps * math.log(1 + math.exp(1))
        assert smoothed.item() == pytest.approx(expected, rel=1e-6)


def test_dpo_small_beta_limit() -> None:
    beta = 1e-6
    pc = torch.tensor([-1.0], requires_grad=True)
    losses, _, _ = dpo_loss(pc, torch.tensor([-4.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=beta)
    assert losses.item() == pytest.approx(LN2, abs=1e-5)
    losses.sum().backward()
    # d/dpc [-log sigmoid(beta z)] = -beta sigmoid(-beta z) -> -beta / 2.
    assert pc.grad.item() == pytest.approx(-beta / 2, rel=1e-4)


def test_dpo_rule_logs_trl_metrics_with_correct_values(
    paper: FrozenLakeMDP, pairs: PairBatch, generator, generators
) -> None:
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    rule = make_rule("dpo", beta=0.5)
    rule.setup(policy, paper, generators(policy))
    loss, metrics = rule.loss(policy, pairs, 0)
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= metrics.keys()
    torch.testing.assert_close(loss, torch.full((2,), LN2))  # the policy is its own reference at the start
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator(1)))
    loss, metrics = rule.loss(policy, pairs, 1)
    with torch.no_grad():
        reward_w = 0.5 * (sequence_logps(policy, pairs.chosen) - sequence_logps(rule.reference, pairs.chosen))
        reward_l = 0.5 * (sequence_logps(policy, pairs.rejected) - sequence_logps(rule.reference, pairs.rejected))
    torch.testing.assert_close(metrics["rewards/chosen"], reward_w.mean(-1))
    torch.testing.assert_close(metrics["rewards/rejected"], reward_l.mean(-1))
    torch.testing.assert_close(metrics["rewards/margins"], (reward_w - reward_l).mean(-1))
    torch.testing.assert_close(metrics["rewards/accuracies"], (reward_w > reward_l).float().mean(-1))
    torch.testing.assert_close(loss, -torch.nn.functional.logsigmoid(reward_w - reward_l).mean(-1))


class SpyWorld:
    """Delegates to a Frozen Lake model and records every ``sample_like`` call."""

    def __init__(self, model: FrozenLakeMDP) -> None:
        self.model = model
        self.calls: list[tuple[object, int, StepBatch]] = []

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def sample_like(self, policy, demos, n_per, generators):
        out = self.model.sample_like(policy, demos, n_per, generators)
        self.calls.append((policy, n_per, out))
        return out


def test_online_dpo_samples_rejected_from_the_current_policy(paper: FrozenLakeMDP, generators) -> None:
    demos = StepBatch.from_trajectories(paper, [paper.optimal_demonstration()])
    policy = MLPPolicy(paper.n_states, 4, seeds=3)
    world = SpyWorld(paper)
    rule = make_rule("dpo-online", n_samples=5)
    assert (rule.name, rule.data) == ("dpo-online", "demos")
    rule.setup(policy, world, generators(policy))
    _, metrics = rule.loss(policy, demos, 0)
    ((sampled_from, n, rejected),) = world.calls
    assert sampled_from is policy and n == 5
    assert rejected.ids.shape[:2] == (3, 5)  # K seeds x n samples, each seed from its own policy
    with torch.no_grad():
        torch.testing.assert_close(metrics["logps/rejected"], sequence_logps(policy, rejected).mean(-1))
        torch.testing.assert_close(metrics["logps/chosen"], sequence_logps(policy, demos).mean(-1))
    rule.loss(policy, demos, 1)
    assert len(world.calls) == 2  # fresh samples at every step
