"""The estimators inside GRPO, RLOO and the importance-weighted rules, in expectation, exactly (issue 21 item 5):
RLOO's leave-one-out update is unbiased to round-off, GRPO's is scaled (and, over prompts or with per-completion
length normalisation, turned) by the computed amounts, the sequence importance weight has expectation exactly 1 and
the token-level ones do not; one seeded Monte Carlo cross-check with iftgym's sampler and the rules' own advantage
code, at a stated false-failure probability.

Setting throughout: the 4x4 map, horizon 8, the policy half the optimal policy and half uniform (J = 0.1988)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP
from iftgym.metrics.estimators import MonteCarloEstimate, as_policy
from iftgym.metrics.rule_estimators import (
    enumerate_episodes,
    group_gradient,
    grpo_gain_binary,
    importance_weights_exact,
    perturbed,
    success_and_gradient,
)
from iftgym.rules.grpo import group_advantages
from iftgym.rules.rloo import leave_one_out_advantages
from iftgym.world import seed_generators

HORIZON = 8
NEAR_GOAL = ["SFFF", "GFFF", "FFFF", "FFFF"]  # a second prompt: an easy map of the same size


@pytest.fixture(scope="module")
def case():
    world = FrozenLakeMDP.from_map("4x4")
    return world, enumerate_episodes(world, HORIZON), 0.5 * world.optimal_matrix + 0.5 / 4


@pytest.fixture(scope="module")
def prompts(case):
    return [enumerate_episodes(FrozenLakeMDP.from_map(NEAR_GOAL), HORIZON), case[1]]


def test_enumeration_is_the_horizon_law(case):
    world, episodes, policy = case
    p = episodes.probs(policy)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    goal = world.state_distributions(policy, HORIZON)[HORIZON][world.goal_mask].sum()  # terminal cells absorb
    J, grad = success_and_gradient(episodes, policy)
    assert pytest.approx(goal, abs=1e-12) == J
    assert pytest.approx(0.19881874322891, abs=1e-12) == J
    # the gradient with respect to the logits, against central differences
    logits, h = np.log(policy), 1e-6
    for s, a in [(0, 1), (4, 1), (8, 2), (14, 2), (9, 0)]:
        shifted = []
        for sign in (1, -1):
            moved = logits.copy()
            moved[s, a] += sign * h
            shifted.append(success_and_gradient(episodes, np.exp(moved) / np.exp(moved).sum(-1, keepdims=True))[0])
        assert grad[s, a] == pytest.approx((shifted[0] - shifted[1]) / (2 * h), abs=1e-8)


@pytest.mark.parametrize("group_size", [2, 4, 8])
def test_rloo_is_unbiased(case, prompts, group_size):
    _, episodes, policy = case
    for where in (episodes, prompts):
        result = group_gradient(where, policy, group_size, "rloo")
        assert result.relative_error < 1e-12
        assert result.gain == pytest.approx(1.0, abs=1e-12)


# the exact gain c(J, G) of GRPO's std-scaled advantage at J = 0.19882
GRPO_GAIN = {2: 0.707007, 4: 1.435702, 8: 1.972199}


@pytest.mark.parametrize("group_size", [2, 4, 8])
def test_grpo_is_biased_by_its_gain(case, group_size):
    _, episodes, policy = case
    J = success_and_gradient(episodes, policy)[0]
    result = group_gradient(episodes, policy, group_size, "grpo", scale_rewards="group")
    # one start, 0/1 rewards: the expected update is exactly c grad J, c = a(1) - a(0) != 1
    assert result.perpendicular < 1e-12
    assert result.gain == pytest.approx(grpo_gain_binary(J, group_size), rel=1e-10)
    assert result.gain == pytest.approx(GRPO_GAIN[group_size], rel=1e-5)
    # Dr. GRPO (no std): the group mean includes the completion itself, so the update is (G - 1) / G of grad J
    unscaled = group_gradient(episodes, policy, group_size, "grpo", scale_rewards="none")
    assert unscaled.perpendicular < 1e-12
    assert unscaled.gain == pytest.approx((group_size - 1) / group_size, abs=1e-12)


def test_grpo_turns_the_update_over_prompts(prompts, case):
    """Two starts of different difficulty (J = 0.582 and 0.199): each prompt's update is scaled by its own c(J_x),
    so their sum points elsewhere than grad J; RLOO's does not."""
    result = group_gradient(prompts, case[2], 8, "grpo")
    assert result.success == pytest.approx((0.58193958, 0.19881874), abs=1e-7)
    assert result.cosine == pytest.approx(0.999192, abs=2e-6)
    assert result.perpendicular == pytest.approx(0.07167, rel=1e-3)
    assert result.gain == pytest.approx(1.78212, rel=1e-5)


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_length_normalisation_turns_the_update(case, estimator):
    """GRPO's ``loss_type="grpo"`` divides each completion's summed token terms by its length: even with RLOO's
    unbiased advantage the expected update leaves grad J's direction (cosine 0.954 at every G); ``dapo`` (the
    batch's token count) and ``dr_grpo`` (a batch-wide constant) turn it much less."""
    _, episodes, policy = case
    cosine = {agg: group_gradient(episodes, policy, 4, estimator, agg).cosine for agg in ("grpo", "dapo", "dr_grpo")}
    assert cosine["grpo"] < 0.97
    assert cosine["grpo"] < cosine["dapo"] < 1 - 1e-6
    assert cosine["grpo"] < cosine["dr_grpo"] < 1 - 1e-6


@pytest.mark.parametrize("scale", [0.1, 0.3, 1.0])
def test_sequence_weight_is_unbiased_and_token_weights_are_not(case, scale):
    _, episodes, old = case
    new = perturbed(old, scale, seed=0)
    result = importance_weights_exact(episodes, old, new)
    # the sequence weight: E_old[w] = 1, E_old[w r] = J_new, E_old[w r grad log p] = grad J_new, to round-off
    assert result.mean["sequence"] == pytest.approx(1.0, abs=1e-12)
    assert result.reward["sequence"] == pytest.approx(result.success_new, abs=1e-12)
    assert result.relative_error("sequence") < 1e-10
    # each token's ratio has conditional expectation 1, so their sum has E_old[L] ...
    assert result.token_sum_ratio == pytest.approx(1.0, abs=1e-12)
    # ... but as a sequence's weight (mean per token: GRPO's loss_type "grpo"; GSPO's and iw-SFT's geometric mean)
    # they are biased, and so is what they weigh: the reward and the policy gradient
    for name in ("token_mean", "geometric", "iw_sft_token"):
        assert abs(result.mean[name] - 1.0) > 1e-4 or (name == "iw_sft_token" and scale < 1)
        assert abs(result.reward[name] - result.success_new) > 5e-3
    assert result.mean["geometric"] < 1.0
    for name in ("token", "geometric"):
        assert result.cosine(name) < 0.997


def test_importance_weight_numbers(case):
    """The measured biases quoted in docs/design.md (scale 0.3: KL(p_old || p_new) = 0.0787 over episodes)."""
    _, episodes, old = case
    result = importance_weights_exact(episodes, old, perturbed(old, 0.3, seed=0))
    assert result.kl == pytest.approx(0.07872, rel=1e-3)
    assert result.mean["token_mean"] == pytest.approx(1.000774, abs=1e-6)
    assert result.mean["geometric"] == pytest.approx(0.990282, abs=1e-6)
    assert result.success_new == pytest.approx(0.173658, abs=1e-6)
    assert result.reward["token_mean"] == pytest.approx(0.194596, abs=1e-6)
    assert result.reward["geometric"] == pytest.approx(0.193068, abs=1e-6)
    assert result.cosine("token") == pytest.approx(0.970349, abs=1e-6)
    assert result.cosine("geometric") == pytest.approx(0.957772, abs=1e-6)


def test_monte_carlo_cross_check(case):
    """Groups sampled by iftgym's own sampler (``max_steps`` = the horizon), scored by the rules' own advantage
    functions: the mean over groups of ``(1/G) sum_i A_i r_i`` (which is ``c J (1 - J)``, since ``E[g_hat] =
    c grad J`` and the advantages of a group sum to 0) agrees with the exact value for RLOO (c = 1) and GRPO
    (c = 1.435702), and GRPO's excludes RLOO's: the bias is visible by sampling. Hoeffding intervals (valid for any
    variable in [0, 1]; the statistic lies in [0, 0.5] for G = 4) at alpha = 0.01, Bonferroni over the 2 checks."""
    world, episodes, matrix = case
    G, n_groups, alpha, bound = 4, 20_000, 0.01, 0.5
    J = success_and_gradient(episodes, matrix)[0]
    policy = as_policy(matrix)
    batch = world.sample(policy, n_groups * G, seed_generators(0, policy.seeds), max_steps=HORIZON)
    rewards = batch.rewards.sum(-1).double()  # (1, n_groups * G): 0/1 episode totals
    advantages = {"rloo": leave_one_out_advantages(rewards, G), "grpo": group_advantages(rewards, G, "group")}
    exact = {"rloo": J * (1 - J), "grpo": grpo_gain_binary(J, G) * J * (1 - J)}
    for name, adv in advantages.items():
        per_group = (adv * rewards).unflatten(-1, (-1, G)).mean(-1)[0]  # (n_groups,)
        assert float(per_group.min()) >= 0 and float(per_group.max()) <= bound
        estimate = MonteCarloEstimate(np.array(float(per_group.sum()) / bound), n_groups, "path", interval="hoeffding")
        low, high = estimate.excludes(np.array(exact[name] / bound), alpha / 2)
        assert not low and not high, (name, estimate.mean * bound, exact[name])
        if name == "grpo":
            assert any(estimate.excludes(np.array(exact["rloo"] / bound), alpha / 2))
    assert math.isclose(torch.as_tensor(rewards).mean().item(), J, abs_tol=0.01)
