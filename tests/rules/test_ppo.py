"""PPO: the clipped surrogate objective and where its gradient vanishes."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym import FrozenLakeMDP
from iftgym.policies import MLPPolicy
from iftgym.rules import make_rule
from iftgym.rules.common import step_logps
from iftgym.world import seed_generators


def ppo_setup(paper: FrozenLakeMDP, **overrides):
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    rule = make_rule("ppo", normalize_advantage=False, vf_coef=0.0, **overrides)
    rule.setup(policy, paper, seed_generators(0, policy.seeds))  # one generator per seed, as the loop does
    rule.loss(policy, None, 0)  # collects the rollout
    return policy, rule


@pytest.mark.parametrize(
    "ratio, advantage, clipped",
    [(2.0, 1.0, True), (0.5, -1.0, True), (2.0, -1.0, False), (1.0, 1.0, False), (0.5, 1.0, False)],
)
def test_ppo_clipping(paper: FrozenLakeMDP, ratio: float, advantage: float, clipped: bool, grads) -> None:
    policy, rule = ppo_setup(paper, clip_range=0.2)
    r = rule.rollout
    with torch.no_grad():
        logps = step_logps(policy, r.batch)
    rule.rollout = type(r)(
        r.batch, logps - math.log(ratio), torch.full_like(logps, advantage) * r.batch.mask, r.returns
    )
    loss, metrics = rule.loss(policy, None, 1)
    expected_surrogate = min(ratio * advantage, min(max(ratio, 0.8), 1.2) * advantage)
    torch.testing.assert_close(metrics["policy_loss"], torch.full((2,), -expected_surrogate))
    torch.testing.assert_close(metrics["clip_fraction"], torch.full((2,), float(ratio != 1.0)))
    gradient = grads(policy, loss)
    size = max(g.abs().max().item() for g in gradient)
    assert (size == 0.0) if clipped else (size > 1e-4)
