"""The estimator-bias testing helper: it passes on correct claims, fails on wrong ones, and fails a correct claim
no more often than its stated false-failure probability."""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest

from iftgym import FrozenLakeMDP, Trajectory
from iftgym.metrics.estimators import ift_estimate, monte_carlo, on_policy_exact, teacher_forced
from iftgym.metrics.testing import assert_estimator_bias, check_estimator_bias
from iftgym.policies import MLPPolicy, TabularPolicy


def short_slippery_case(steps: int = 4) -> tuple[FrozenLakeMDP, TabularPolicy, Trajectory]:
    """A slippery 4x4 world, a 2-seed random policy and the first ``steps`` steps of a demonstration."""
    world = FrozenLakeMDP.from_map("4x4", slippery=True, success_rate=0.8)
    demo = world.optimal_demonstration(rng=1)
    demo = Trajectory(demo.states[: steps + 1], demo.actions[:steps], demo.rewards[:steps], False)
    return world, TabularPolicy(world.n_states, 4, seeds=2, init_std=1.0), demo


def inflated(factor: float):
    """A deliberately biased estimator: the exact value times ``factor``, capped at 1."""

    def estimator(policy, world, demos):
        return np.minimum(on_policy_exact(policy, world, demos) * factor, 1.0)

    return estimator


def binomial_upper_quantile(n: int, p: float, tail: float) -> int:
    """The smallest k with P(Binomial(n, p) > k) <= tail."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if 1 - cdf <= tail:
            return k
    return n


# -- exact references: nothing random -------------------------------------------------------------------------
def test_the_docstring_examples_pass():
    world = FrozenLakeMDP.from_map("paper")
    policy = TabularPolicy(world.n_states, 4, seeds=3, init_std=1.0)
    assert_estimator_bias(teacher_forced, policy, world, world.optimal_demonstration(), "over")
    world = FrozenLakeMDP.from_map("4x4", slippery=True)
    policy = TabularPolicy(world.n_states, 4, seeds=2, init_std=1.0)
    demo = world.optimal_demonstration()
    assert_estimator_bias(on_policy_exact, policy, world, demo, "unbiased", reference="monte-carlo",
                          n_episodes=20_000, alpha=0.01, seed=0)  # fmt: skip


def test_sft_over_estimates_at_every_step_after_the_first():
    world = FrozenLakeMDP.from_map("paper")
    policy = MLPPolicy(world.n_states, 4, seeds=4)
    check = assert_estimator_bias(teacher_forced, policy, world, world.optimal_demonstration(), "over")
    assert check.passed and check.random_side == "none" and check.cell_alpha == 0.0
    assert (check.direction[..., 0] == 0).all() and (check.direction[..., 1:] == 1).all()
    assert check.estimate.shape == check.reference.shape == (4, 1, 6)


def test_a_wrong_claim_fails_with_the_step_estimate_and_reference():
    world = FrozenLakeMDP.from_map("paper")
    policy = TabularPolicy(world.n_states, 4, seeds=[11, 12], init_std=1.0)
    demo = world.optimal_demonstration()
    with pytest.raises(AssertionError) as failure:
        assert_estimator_bias(teacher_forced, policy, world, demo, "unbiased")
    message = str(failure.value)
    assert message.startswith("teacher_forced is not unbiased against exact on-policy (reach='path'): 10 of 12 steps")
    assert re.search(
        r"\n  seed 1[12], step [1-5] \(state \d+, action (DOWN|RIGHT)\): estimate 0\.\d+, reference 0\.", message
    )
    assert message.count("\n  seed") == 5 and "... and 5 more" in message and "round-off" in message
    with pytest.raises(AssertionError, match="not under-estimating"):
        assert_estimator_bias(teacher_forced, policy, world, demo, "under")
    assert not check_estimator_bias(teacher_forced, policy, world, demo, "under").passed


def test_another_estimator_can_be_the_reference():
    world = FrozenLakeMDP.from_map("paper")
    policy = MLPPolicy(world.n_states, 4, seeds=3)
    demo = world.optimal_demonstration()
    assert_estimator_bias(on_policy_exact, policy, world, demo, "unbiased")
    assert_estimator_bias(functools.partial(ift_estimate, lam=0.0), policy, world, demo, reference=teacher_forced)
    with pytest.raises(AssertionError, match=r"^on_policy_exact is not unbiased against teacher_forced"):
        assert_estimator_bias(on_policy_exact, policy, world, demo, reference=teacher_forced)


def test_round_off_tolerance_accepts_a_float32_estimator():
    world = FrozenLakeMDP.from_map("paper")
    policy = MLPPolicy(world.n_states, 4, seeds=2)

    def float32_exact(policy, world, demos):
        return on_policy_exact(policy, world, demos).astype(np.float32)

    assert_estimator_bias(float32_exact, policy, world, world.optimal_demonstration(), "unbiased")
    assert not check_estimator_bias(float32_exact, policy, world, world.optimal_demonstration(), rtol=0.0).passed


# -- Monte Carlo references -----------------------------------------------------------------------------------
def test_biased_estimators_fail_and_unbiased_ones_pass_against_monte_carlo():
    world, policy, demo = short_slippery_case()
    # seeded: a correct "unbiased" claim fails for about one seed in 20 at alpha 0.05 (seeds 1, 8, 34 of 0..39)
    kwargs = {"reference": "monte-carlo", "n_episodes": 20_000, "seed": 0}
    assert_estimator_bias(on_policy_exact, policy, world, demo, "unbiased", **kwargs)
    with pytest.raises(AssertionError) as failure:
        assert_estimator_bias(inflated(1.2), policy, world, demo, "unbiased", **kwargs)
    message = str(failure.value)
    assert "significantly above the reference" in message and "[interval 0." in message
    assert "Bonferroni" in message and "20000 episodes per seed" in message
    assert_estimator_bias(inflated(1.2), policy, world, demo, "over", **kwargs)
    assert_estimator_bias(inflated(0.8), policy, world, demo, "under", **kwargs)
    assert_estimator_bias(teacher_forced, policy, world, demo, "over", **kwargs)
    with pytest.raises(AssertionError, match="not under-estimating"):
        assert_estimator_bias(inflated(1.2), policy, world, demo, "under", **kwargs)


def test_a_bias_smaller_than_the_interval_is_reported_as_undetected():
    world, policy, demo = short_slippery_case()
    check = check_estimator_bias(inflated(1.01), policy, world, demo, "over", reference="monte-carlo", n_episodes=500)
    assert not check.passed and (check.direction >= 0).all()
    assert "no step is significantly above the reference" in check.message and "raise n_episodes" in check.message


def test_a_monte_carlo_estimator_is_checked_with_its_own_interval():
    world = FrozenLakeMDP.from_map("4x4", slippery=True, success_rate=0.8)
    demo = world.optimal_demonstration(rng=1)
    policy = TabularPolicy(world.n_states, 4, seeds=2, init_std=1.0)
    counted = functools.partial(monte_carlo, n_episodes=20_000, seed=2)
    check = assert_estimator_bias(counted, policy, world, demo, "unbiased")
    assert check.random_side == "estimate"
    lower, upper = check.interval()
    assert ((lower <= check.reference) & (check.reference <= upper)).all()
    # A classic Monte Carlo bug: counting arrivals by any route while the exact value is along the path only.
    wrong_event = functools.partial(monte_carlo, n_episodes=20_000, seed=2, reach="state")
    exact_path = functools.partial(on_policy_exact, reach="path")
    with pytest.raises(AssertionError, match=r"estimate 0\.\d+ \[interval"):
        assert_estimator_bias(wrong_event, policy, world, demo, "unbiased", reference=exact_path)
    assert_estimator_bias(wrong_event, policy, world, demo, "over", reference=exact_path)


def test_hoeffding_intervals_work_too():
    world, policy, demo = short_slippery_case()
    kwargs = {"reference": "monte-carlo", "n_episodes": 20_000, "interval": "hoeffding"}
    assert_estimator_bias(on_policy_exact, policy, world, demo, "unbiased", **kwargs)
    assert_estimator_bias(inflated(1.5), policy, world, demo, "over", **kwargs)


def test_the_false_failure_rate_is_within_its_binomial_bound():
    """200 seeded checks of a correct claim at alpha = 0.05: the number of failures is at most Binomial(200, 0.05)
    (the check is conservative: Bonferroni and Clopper-Pearson only over-cover). The bound below is exceeded with
    probability < 1e-3 even at the nominal rate, so this test is itself reliable; and it is seeded, so it never
    flakes."""
    world, policy, demo = short_slippery_case(steps=2)
    runs, alpha = 200, 0.05
    failures = sum(
        not check_estimator_bias(on_policy_exact, policy, world, demo, reference="monte-carlo", alpha=alpha,
                                 n_episodes=400, seed=seed).passed
        for seed in range(runs)
    )  # fmt: skip
    assert failures <= binomial_upper_quantile(runs, alpha, 1e-3)
    # ... while a biased estimator (10% too high) fails in most of the same runs.
    caught = sum(
        not check_estimator_bias(inflated(1.1), policy, world, demo, reference="monte-carlo", alpha=alpha,
                                 n_episodes=20_000, seed=seed).passed
        for seed in range(20)
    )  # fmt: skip
    assert caught >= 18


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"expected": "fair"}, "expected='fair'"),
        ({"reference": "oracle"}, "reference='oracle'"),
        ({"alpha": 0.0}, "alpha=0.0"),
        ({"interval": "wald"}, "interval='wald'"),
        ({"reach": "near"}, "reach='near'"),
    ],
)
def test_bad_arguments_raise_value_errors(kwargs, match):
    world = FrozenLakeMDP.from_map("paper")
    with pytest.raises(ValueError, match=match):
        check_estimator_bias(teacher_forced, TabularPolicy(world.n_states, 4), world, world.optimal_demonstration(),
                             **kwargs)  # fmt: skip


def test_two_random_sides_or_mismatched_shapes_are_refused():
    world, policy, demo = short_slippery_case()
    counted = functools.partial(monte_carlo, n_episodes=100)
    with pytest.raises(ValueError, match="both Monte Carlo"):
        check_estimator_bias(counted, policy, world, demo, reference="monte-carlo", n_episodes=100)
    with pytest.raises(ValueError, match="shape"):
        check_estimator_bias(lambda *args: np.zeros((2, 3)), policy, world, demo)
