"""Rollout scores: for a Markov policy they estimate the exact ones (equal where they are computed the same way),
and a policy with memory gets every measure that does not need a policy matrix."""

from __future__ import annotations

import numpy as np

from iftgym import FrozenLakeMDP
from iftgym.metrics.decompose import decomposed_scores
from iftgym.metrics.estimators import binomial_interval
from iftgym.metrics.rollouts import rollout_scores
from iftgym.policies import GRUPolicy, TabularPolicy


def test_rollout_scores_of_a_markov_policy_estimate_the_exact_scores() -> None:
    model = FrozenLakeMDP.from_map(["SFF", "FHF", "FFG"])
    data = model.training_data()
    policy = TabularPolicy(model.n_states, 4, seeds=3, init_std=1.0)
    scores = rollout_scores(model, policy, data.demos, episodes=2000)
    matrices = policy.action_probs().double().numpy()
    exact = model.scores(matrices, ["success"])["success"]
    low, high = binomial_interval(scores["success"] * 2000, 2000, alpha=0.001)
    assert ((low <= exact) & (exact <= high)).all()
    decomposed = decomposed_scores(model, matrices, data.demos)
    np.testing.assert_allclose(scores["mse_demo"], decomposed["mse_demo"], rtol=1e-6)  # the same steps (float32 logits)
    np.testing.assert_allclose(scores["mse_own_visits"], decomposed["mse_own_visits"], atol=0.01)
    np.testing.assert_allclose(scores["optimal_mass_own_visits"], decomposed["optimal_mass_own_visits"], atol=0.02)
    assert (
        rollout_scores(model, policy, data.demos, episodes=50)["success"].tolist()
        == rollout_scores(model, policy, data.demos, episodes=50)["success"].tolist()
    )  # fmt: skip  (fixed evaluation seed)


def test_a_policy_with_memory_gets_what_needs_no_policy_matrix() -> None:
    model = FrozenLakeMDP.from_map("4x4")
    scores = rollout_scores(model, GRUPolicy(model.n_states, 4, hidden=8, seeds=2), model.training_data().demos, 20)
    for name in ("mse", "greedy_success", "explored"):
        assert np.isnan(scores[name]).all()
    for name in ("success", "mse_demo", "mse_own_visits", "optimal_mass_own_visits"):
        assert scores[name].shape == (2,) and np.isfinite(scores[name]).all()
