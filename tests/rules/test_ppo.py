"""PPO: the clipped surrogate objective, where its gradient vanishes, and when rollouts are collected."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from iftgym import FrozenLakeMDP, TrainConfig, train
from iftgym.policies import MLPPolicy
from iftgym.rules import make_rule
from iftgym.rules.onpolicy import collect
from iftgym.world import seed_generators


def ppo_setup(paper: FrozenLakeMDP, **overrides):
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    rule = make_rule("ppo", normalize_advantage=False, vf_coef=0.0, **overrides)
    rule.setup(policy, paper, seed_generators(0, policy.seeds))  # one generator per seed, as the loop does
    rule.collect(policy, 0)  # samples the rollout the losses read
    return policy, rule


@pytest.mark.parametrize(
    "ratio, advantage, clipped",
    [(2.0, 1.0, True), (0.5, -1.0, True), (2.0, -1.0, False), (1.0, 1.0, False), (0.5, 1.0, False)],
)
def test_ppo_clipping(paper: FrozenLakeMDP, ratio: float, advantage: float, clipped: bool, grads) -> None:
    policy, rule = ppo_setup(paper, clip_range=0.2)
    r = rule.rollout
    with torch.no_grad():
        logps = r.logps(r.log_probs(policy))
    # the same advantage on every step; the steps' weights sum to 1 per seed
    rule.rollout = dataclasses.replace(r, old_logps=logps - math.log(ratio), adv_pos=r.weight * max(advantage, 0),
                                       adv_neg=r.weight * min(advantage, 0))  # fmt: skip
    loss, metrics = rule.loss(policy, None, 1)
    expected_surrogate = min(ratio * advantage, min(max(ratio, 0.8), 1.2) * advantage)
    torch.testing.assert_close(metrics["policy_loss"], torch.full((2,), -expected_surrogate))
    torch.testing.assert_close(metrics["clip_fraction"], torch.full((2,), float(ratio != 1.0)))
    gradient = grads(policy, loss)
    size = max(g.abs().max().item() for g in gradient)
    assert (size == 0.0) if clipped else (size > 1e-4)


@pytest.mark.parametrize("name", ["ppo", "reinforce"])
@pytest.mark.parametrize("slippery", [False, True])
def test_the_per_state_loss_equals_the_per_step_loss(name: str, slippery: bool) -> None:
    """Summing the steps per (state, action) changes the cost, not the loss: same losses, metrics and gradients."""
    world = FrozenLakeMDP.from_map("4x4", slippery=slippery)
    policy = MLPPolicy(world.n_states, 4, hidden=16, seeds=3)
    results = []
    for per_state in (True, False):
        rule = make_rule(name, **({"ent_coef": 0.1} if name == "ppo" else {}))
        rule.setup(policy, world, seed_generators(0, policy.seeds))
        rollout = collect(policy, rule.critic, None, world, 8, seed_generators(1, policy.seeds), 0.9, 0.95, 0.0,
                          name == "ppo", per_state)  # fmt: skip
        assert rollout.per_state == per_state
        rule.rollout = rollout
        with torch.no_grad():
            for p in rule.critic.parameters():  # a critic that predicts something
                p.normal_(generator=torch.Generator().manual_seed(2))
        loss, metrics = rule.loss(policy, None, 1)
        grad = torch.autograd.grad(loss.sum(), list(policy.parameters()) + list(rule.critic.parameters()))
        results.append((loss.detach(), metrics, grad))
    (loss_a, metrics_a, grad_a), (loss_b, metrics_b, grad_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    for key in metrics_a:
        torch.testing.assert_close(metrics_a[key], metrics_b[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(grad_a, grad_b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("name", "options", "collected"), [("ppo", {"update_epochs": 3}, 3), ("reinforce", {}, 7)])
def test_the_loop_collects_rollouts_before_the_loss(paper: FrozenLakeMDP, name, options, collected) -> None:
    """``collect`` samples (PPO every ``update_epochs`` steps, REINFORCE every step); ``loss`` only reads."""
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    rule = make_rule(name, n_episodes=2, **options)
    sampled = []
    fresh = rule.fresh_rollout
    rule.fresh_rollout = lambda *args, **kwargs: sampled.append(1) or fresh(*args, **kwargs)
    train(policy, rule, paper, config=TrainConfig(steps=7, progress=False))
    assert len(sampled) == collected
    rule.setup(policy, paper, seed_generators(0, policy.seeds))
    with pytest.raises(RuntimeError, match="call collect"):
        rule.loss(policy, None, 0)
    rule.collect(policy, 0)
    assert len(sampled) == collected + 1
    rule.loss(policy, None, 0)
    assert len(sampled) == collected + 1
