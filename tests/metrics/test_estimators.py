"""Preference estimators: the SFT-bias identity, exact against Monte Carlo, IFT's estimate, binomial intervals."""

from __future__ import annotations

import functools
import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iftgym import FrozenLakeMDP, StepBatch, Trajectory, random_map
from iftgym.metrics import estimators
from iftgym.metrics.estimators import (
    MonteCarloEstimate,
    as_policy,
    binomial_interval,
    demonstration_log_bias,
    estimator_bias,
    ift_estimate,
    monte_carlo,
    on_policy_exact,
    policy_matrix,
    preference_estimates,
    prefix_losses,
    resolve_reach,
    teacher_forced,
)
from iftgym.metrics.testing import assert_estimator_bias
from iftgym.policies import MLPPolicy, TabularPolicy

OPEN_3X3 = ["SFF", "FFF", "FFG"]  # several shortest routes meet in the middle cells


def random_policy(kind: str, n_states: int, seed: int, scale: float) -> TabularPolicy | MLPPolicy:
    """A float64 policy with 2 seeds: a tabular one with N(0, scale) logits, or a randomly initialised MLP."""
    if kind == "tabular":
        return TabularPolicy(n_states, 4, seeds=[seed, seed + 1], init_std=scale).double()
    policy = MLPPolicy(n_states, 4, hidden=16, seeds=[seed, seed + 1]).double()
    with torch.no_grad():
        policy.w2.mul_(scale * 4)  # sharper than the default initialisation, so probabilities vary
    return policy


def independent_matrix(policy) -> np.ndarray:
    """``(K, S, A)`` action probabilities computed straight from the policy's forward pass."""
    with torch.no_grad():
        return torch.softmax(policy(policy.embedding_table()[:, None]).double(), -1)[:, 0].numpy()


def enumerate_on_policy(world: FrozenLakeMDP, matrix: np.ndarray, demo: Trajectory, n: int) -> tuple[float, float]:
    """By brute force over all 4^n action sequences of a deterministic map: P(the rollout followed the
    demonstration to step n and takes a*_n), and P(it is in cell s*_n at time n and takes a*_n)."""
    actions = np.array(list(itertools.product(range(4), repeat=n)), dtype=int).reshape(4**n, n)
    states = np.full(len(actions), world.start)
    prob = np.ones(len(actions))
    followed = np.ones(len(actions), dtype=bool)
    for t in range(n):
        a = actions[:, t]
        followed &= (states == demo.states[t]) & (a == demo.actions[t])
        prob *= matrix[states, a]
        states = world.P[states, a].argmax(-1)
    here = states == demo.states[n]
    target = matrix[demo.states[n], demo.actions[n]]
    return float((prob * (here & followed)).sum() * target), float((prob * here).sum() * target)


# -- the identity ---------------------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(
    rows=st.integers(2, 5),
    cols=st.integers(2, 5),
    p_hole=st.sampled_from([0.0, 0.15, 0.3]),
    map_seed=st.integers(0, 10_000),
    kind=st.sampled_from(["tabular", "mlp"]),
    policy_seed=st.integers(0, 10_000),
    scale=st.floats(0.1, 3.0),
    demo_kind=st.sampled_from(["optimal", "random"]),
)
def test_log_bias_equals_the_prefix_losses_on_deterministic_maps(
    rows, cols, p_hole, map_seed, kind, policy_seed, scale, demo_kind
):
    world = FrozenLakeMDP.from_map(random_map((rows, cols), p_hole, seed=map_seed))
    policy = random_policy(kind, world.n_states, policy_seed, scale)
    if demo_kind == "optimal":
        demo = world.optimal_demonstration()
    else:
        walk = np.random.default_rng(map_seed).dirichlet(np.ones(4), size=world.n_states)
        demo = world.rollout(walk, rng=policy_seed, max_steps=10)
    forced = teacher_forced(policy, world, demo)
    exact = on_policy_exact(policy, world, demo)
    losses = prefix_losses(policy, world, demo)
    assert forced.shape == exact.shape == losses.shape == (2, len(demo))
    assert resolve_reach(world, "auto") == "path"

    # The identity: log TF_n - log exact_n = sum_{i<n} -log pi(a*_i | s*_i), to float64 round-off.
    bias = estimator_bias(forced, exact)
    np.testing.assert_allclose(bias.log, losses, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bias.log_sum, losses.sum(-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bias.prob, forced * (1 - np.exp(-losses)), rtol=1e-12, atol=1e-15)
    assert (bias.log >= 0).all() and (bias.log[:, 0] == 0).all()

    # Independently of the module: the forward pass gives the teacher-forced values, and brute-force
    # enumeration of every action sequence gives both reach definitions.
    matrix = independent_matrix(policy)
    np.testing.assert_allclose(forced, matrix[:, list(demo.states[:-1]), list(demo.actions)], rtol=1e-12)
    by_state = on_policy_exact(policy, world, demo, reach="state")
    for n in range(min(len(demo), 5)):
        for k in range(2):
            path, state = enumerate_on_policy(world, matrix[k], demo, n)
            assert exact[k, n] == pytest.approx(path, rel=1e-10, abs=1e-300)
            assert by_state[k, n] == pytest.approx(state, rel=1e-10, abs=1e-300)
    assert (by_state >= exact * (1 - 1e-12)).all()


def test_state_reach_counts_every_route_and_path_reach_only_the_demonstration():
    world = FrozenLakeMDP.from_map(OPEN_3X3)
    demo = world.optimal_demonstration()
    policy = TabularPolicy(world.n_states, 4, seeds=2, init_std=0.5).double()
    path = on_policy_exact(policy, world, demo, reach="path")
    state = on_policy_exact(policy, world, demo, reach="state")
    np.testing.assert_allclose(path[:, :2], state[:, :2], rtol=1e-12)  # one route to each of the first cells
    assert (state[:, 3] > 1.05 * path[:, 3]).all()  # three 3-move routes into the demonstration's fourth cell
    for reach in ("path", "state"):
        assert_estimator_bias(
            lambda p, w, d, reach=reach: on_policy_exact(p, w, d, reach), policy, world, demo, "unbiased",
            reference="monte-carlo", reach=reach, n_episodes=20_000, alpha=0.01,
        )  # fmt: skip


def test_paper_map_has_one_route_so_both_reaches_agree():
    world = FrozenLakeMDP.from_map("paper")
    demo = world.optimal_demonstration()
    policy = TabularPolicy(world.n_states, 4, seeds=3, init_std=1.0).double()
    np.testing.assert_allclose(
        on_policy_exact(policy, world, demo, "path"), on_policy_exact(policy, world, demo, "state"), rtol=1e-12
    )


# -- exact against Monte Carlo --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "success_rate", "demo_seed", "reach"),
    [("paper", 1 / 3, 2, "state"), ("4x4", 1 / 3, 1, "state"), ("4x4", 0.8, 1, "path"), ("detour-5x5", 0.6, 3, "auto")],
)
def test_exact_agrees_with_monte_carlo_on_slippery_maps(name, success_rate, demo_seed, reach):
    world = FrozenLakeMDP.from_map(name, slippery=True, success_rate=success_rate)
    assert resolve_reach(world, "auto") == "state"
    demo = world.optimal_demonstration(rng=demo_seed)
    policy = MLPPolicy(world.n_states, 4, seeds=2)
    check = assert_estimator_bias(
        functools.partial(on_policy_exact, reach=reach), policy, world, demo, "unbiased",
        reference="monte-carlo", reach=reach, n_episodes=10_000, alpha=0.01, seed=7,
    )  # fmt: skip
    assert check.random_side == "reference" and check.cells == 2 * len(demo)


def test_slippery_path_reach_adds_the_transition_surprisal_to_the_identity():
    world = FrozenLakeMDP.from_map("4x4", slippery=True, success_rate=0.6)
    demo = world.optimal_demonstration(rng=3)
    policy = TabularPolicy(world.n_states, 4, seeds=2, init_std=1.0).double()
    surprisal = -np.log([world.P[s, a, s2] for s, a, s2 in zip(demo.states, demo.actions, demo.states[1:])])
    prefix_surprisal = np.concatenate([[0.0], np.cumsum(surprisal)[:-1]])
    bias = estimator_bias(teacher_forced(policy, world, demo), on_policy_exact(policy, world, demo, "path"))
    np.testing.assert_allclose(bias.log, prefix_losses(policy, world, demo) + prefix_surprisal, rtol=1e-6)


def test_gymnasium_rollouts_agree_with_the_exact_value():
    world = FrozenLakeMDP.from_map("4x4", slippery=True, success_rate=0.8)
    demo = world.optimal_demonstration()
    policy = TabularPolicy(world.n_states, 4, seeds=1, init_std=1.0)

    def env() -> gym.Env:
        return gym.make(
            "iftgym/FrozenLake-v0", map=list(world.desc), slippery=world.slippery, success_rate=world.success_rate
        )

    estimate = monte_carlo(policy, world, demo, n_episodes=400, seed=5, env=env)
    assert estimate.n_episodes == 400 and estimate.successes.shape == (1, len(demo))
    assert_estimator_bias(lambda *args: estimate, policy, world, demo, "unbiased", alpha=0.01)


def test_monte_carlo_is_seeded_and_chunked(monkeypatch):
    world = FrozenLakeMDP.from_map("4x4", slippery=True, success_rate=0.8)
    demo = world.optimal_demonstration(rng=1)
    policy = TabularPolicy(world.n_states, 4, seeds=2, init_std=1.0)
    monkeypatch.setattr(estimators, "CHUNK_EPISODES", 1000)
    a = monte_carlo(policy, world, demo, n_episodes=2500, seed=3)
    b = monte_carlo(policy, world, demo, n_episodes=2500, seed=3)
    c = monte_carlo(policy, world, demo, n_episodes=2500, seed=4)
    np.testing.assert_array_equal(a.successes, b.successes)
    assert not np.array_equal(a.successes, c.successes)
    assert a.successes.shape == (2, len(demo)) and (a.successes <= 2500).all() and a.successes[:, 0].min() > 0
    assert_estimator_bias(lambda *args: a, policy, world, demo, "unbiased")


# -- IFT's estimate -------------------------------------------------------------------------------------------
def test_ift_estimate_with_lambda_zero_is_teacher_forced():
    world = FrozenLakeMDP.from_map("paper")
    demo = world.optimal_demonstration()
    policy = MLPPolicy(world.n_states, 4, seeds=3)
    np.testing.assert_allclose(ift_estimate(policy, world, demo, lam=0.0), teacher_forced(policy, world, demo))


def test_ift_estimate_mixes_in_where_the_greedy_prediction_leads():
    world = FrozenLakeMDP.from_map("paper")
    demo = world.optimal_demonstration()
    policy = TabularPolicy(world.n_states, 4, seeds=4, init_std=2.0).double()
    matrix = policy_matrix(policy)
    states, actions = np.array(demo.states[:-1]), np.array(demo.actions)
    for k in range(4):
        greedy = matrix[k, states[:-1]].argmax(-1)
        lands = world.P[states[:-1], greedy].argmax(-1)  # where the model's own prediction leads
        logits = np.log(matrix[k])
        for lam in (0.3, 1.0):
            mixed = (1 - lam) * logits[states[1:]] + lam * logits[lands]
            expected = np.exp(mixed - np.logaddexp.reduce(mixed, axis=-1, keepdims=True))[np.arange(5), actions[1:]]
            got = ift_estimate(policy, world, demo, lam=lam)[k]
            assert got[0] == pytest.approx(matrix[k, states[0], actions[0]])
            np.testing.assert_allclose(got[1:], expected, rtol=1e-6)


def test_ift_estimate_equals_teacher_forced_when_predictions_follow_the_demonstration():
    world = FrozenLakeMDP.from_map("paper")
    demo = world.optimal_demonstration()
    confident = 0.7 * world.optimal_policy() + 0.075  # greedy = the demonstration's action in every cell
    np.testing.assert_allclose(ift_estimate(confident, world, demo, lam=0.5), teacher_forced(confident, world, demo))


# -- shapes, inputs and errors --------------------------------------------------------------------------------
def test_batches_give_one_row_per_demonstration_with_nan_padding():
    world = FrozenLakeMDP.from_map("paper")
    long, short = world.suboptimal_demonstration(), world.optimal_demonstration()
    policy = MLPPolicy(world.n_states, 4, seeds=3)
    batch = StepBatch.from_trajectories(world, [long, short])
    est = preference_estimates(policy, world, [long, short])
    assert est.exact.shape == est.teacher_forced.shape == est.ift.shape == (3, 2, len(long))
    assert np.isnan(est.exact[:, 1, len(short) :]).all() and not np.isnan(est.exact[:, 1, : len(short)]).any()
    np.testing.assert_allclose(on_policy_exact(policy, world, batch), est.exact)
    np.testing.assert_allclose(est.exact[:, 1, : len(short)], on_policy_exact(policy, world, short))
    np.testing.assert_allclose(est.sft_bias.log_sum[:, 1], estimator_bias(
        teacher_forced(policy, world, short), on_policy_exact(policy, world, short)).log_sum)  # fmt: skip
    mc = monte_carlo(policy, world, batch, n_episodes=500)
    assert mc.successes.shape == (3, 2, len(long)) and np.isnan(mc.successes[:, 1, len(short) :]).all()


def test_policy_matrices_are_used_exactly():
    world = FrozenLakeMDP.from_map("4x4")
    demo = world.optimal_demonstration()
    matrices = np.random.default_rng(0).dirichlet(np.ones(4), size=(3, world.n_states))
    matrices[0, 0] = [0.0, 1.0, 0.0, 0.0]  # exact zeros are allowed
    np.testing.assert_allclose(policy_matrix(matrices), matrices, atol=1e-15)
    forced = teacher_forced(matrices, world, demo)
    np.testing.assert_allclose(forced, matrices[:, list(demo.states[:-1]), list(demo.actions)], rtol=1e-13)
    assert teacher_forced(matrices[1], world, demo).shape == (1, len(demo))
    log_bias = demonstration_log_bias(world, matrices, demo)
    np.testing.assert_allclose(log_bias, prefix_losses(matrices, world, demo).sum(-1), rtol=1e-12)
    assert demonstration_log_bias(world, world.optimal_policy()[None], demo) == pytest.approx([0.0])
    assert as_policy(as_policy(matrices)) is not None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda w, p, d: on_policy_exact(p, w, d, reach="sideways"), "reach='sideways'"),
        (lambda w, p, d: monte_carlo(p, w, d, interval="wald"), "interval='wald'"),
        (lambda w, p, d: monte_carlo(p, w, d, env="cloud"), "env='cloud'"),
        (lambda w, p, d: monte_carlo(p, w, d, n_episodes=0), "n_episodes=0"),
        (lambda w, p, d: monte_carlo(p, w, d, alpha=1.5), "alpha=1.5"),
        (lambda w, p, d: ift_estimate(p, w, d, lam=2.0), "lam=2.0"),
        (lambda w, p, d: teacher_forced(np.ones((2, 2, 2, 2)), w, d), "shape"),
        (lambda w, p, d: teacher_forced(np.full((16, 4), 0.3), w, d), "probability distributions"),
        (lambda w, p, d: binomial_interval(np.array([1.0]), 10, method="exact"), "method='exact'"),
    ],
)
def test_bad_arguments_raise_value_errors(call, match):
    world = FrozenLakeMDP.from_map("4x4")
    with pytest.raises(ValueError, match=match):
        call(world, TabularPolicy(world.n_states, 4), world.optimal_demonstration())


# -- binomial intervals ---------------------------------------------------------------------------------------
def binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (3, 40), (37, 40), (120, 300)])
def test_clopper_pearson_inverts_the_binomial_tails(k, n):
    alpha = 0.05
    (lower,), (upper,) = binomial_interval(np.array([k]), n, alpha)
    assert lower == 0.0 if k == 0 else 1 - binomial_cdf(k - 1, n, lower) == pytest.approx(alpha / 2, abs=1e-9)
    assert upper == 1.0 if k == n else binomial_cdf(k, n, upper) == pytest.approx(alpha / 2, abs=1e-9)
    if k == 0:
        assert upper == pytest.approx(1 - (alpha / 2) ** (1 / n))
    estimate = MonteCarloEstimate(np.full(4, float(k)), n, "path", alpha)
    below, above = estimate.excludes(np.array([lower - 1e-6, lower + 1e-6, upper - 1e-6, upper + 1e-6]))
    np.testing.assert_array_equal(below, [k > 0, False, False, False])
    np.testing.assert_array_equal(above, [False, False, False, k < n])


def test_hoeffding_interval():
    lower, upper = binomial_interval(np.array([50.0, 0.0]), 100, 0.05, "hoeffding")
    half = math.sqrt(math.log(40) / 200)
    np.testing.assert_allclose(lower, [0.5 - half, 0.0])
    np.testing.assert_allclose(upper, [0.5 + half, half])
