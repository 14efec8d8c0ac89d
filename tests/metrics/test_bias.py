"""Bias maps: the per-cell bias of SFT's estimate equals the per-step bias along the demonstration."""

from __future__ import annotations

import numpy as np
import pytest

from iftgym import FrozenLakeMDP
from iftgym.metrics.bias import bias_map
from iftgym.metrics.estimators import estimator_bias, on_policy_exact, teacher_forced
from iftgym.policies import MLPPolicy

OPEN_3X3 = ["SFF", "FFF", "FFG"]  # several shortest routes meet in the middle cells


def test_bias_map_matches_the_per_step_bias_on_the_demonstration():
    world = FrozenLakeMDP.from_map(OPEN_3X3)
    demo = world.optimal_demonstration()
    policy = MLPPolicy(world.n_states, 4, seeds=2)
    probs = bias_map(policy, world)
    logs = bias_map(policy, world, space="log")
    assert probs.shape == logs.shape == (2, 3, 3)
    bias = estimator_bias(teacher_forced(policy, world, demo), on_policy_exact(policy, world, demo, "state"))
    cells = np.unravel_index(list(demo.states[:-1]), (3, 3))
    np.testing.assert_allclose(probs[:, cells[0], cells[1]], bias.prob, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(logs[:, cells[0], cells[1]], bias.log, rtol=1e-9, atol=1e-12)
    assert np.isnan(probs[:, 2, 2]).all() and (probs[~np.isnan(probs)] >= 0).all()
    with pytest.raises(ValueError, match="space='odds'"):
        bias_map(policy, world, space="odds")
