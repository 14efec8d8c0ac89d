"""The decomposed distance to the optimum: exact splits of the MSE, visit weights, and tie-robust optimality."""

from __future__ import annotations

import numpy as np
import pytest

from iftgym import FrozenLakeMDP
from iftgym.metrics.decompose import DECOMPOSED, cell_errors, decomposed_scores, demonstrated_cells


@pytest.fixture(scope="module")
def model() -> FrozenLakeMDP:
    return FrozenLakeMDP.from_map("paper")


def test_the_mse_splits_exactly_into_demonstrated_and_other_cells(model: FrozenLakeMDP) -> None:
    data = model.training_data()
    rng = np.random.default_rng(0)
    policies = rng.dirichlet(np.ones(4), size=(3, model.n_states))
    scores = decomposed_scores(model, policies, data.demos)
    assert set(scores) == set(DECOMPOSED) and all(v.shape == (3,) for v in scores.values())
    alive = ~model.terminal
    demo = demonstrated_cells(model, data.demos) & alive
    assert demo.sum() == 6  # the optimal route's cells before G
    mse = model.scores(policies, ["mse"])["mse"]
    recombined = (demo.sum() * scores["mse_demo"] + (alive & ~demo).sum() * scores["mse_rest"]) / alive.sum()
    np.testing.assert_allclose(recombined, mse, rtol=0, atol=1e-15)
    np.testing.assert_allclose(cell_errors(model, policies)[:, alive].mean(-1), mse, rtol=0, atol=1e-15)


def test_the_optimal_policy_scores_perfectly_and_copying_a_tied_choice_costs_nothing(model: FrozenLakeMDP) -> None:
    open_map = FrozenLakeMDP.from_map(["SFF", "FFF", "FFG"])  # from S, RIGHT and DOWN tie
    data = open_map.training_data()
    perfect = decomposed_scores(open_map, open_map.optimal_matrix[None], data.demos)
    assert perfect["mse_rest"][0] == 0 and perfect["optimal_mass"][0] == pytest.approx(1.0)
    greedy = np.eye(4)[open_map.optimal_matrix.argmax(-1)][None]  # one of the tied actions everywhere
    scores = decomposed_scores(open_map, greedy, data.demos)
    assert scores["optimal_mass"][0] == pytest.approx(1.0)  # tie-robust: full mass on optimal actions
    assert scores["mse_demo"][0] > 0  # while the MSE charges the broken tie


def test_visit_weights_follow_where_the_policies_go(model: FrozenLakeMDP) -> None:
    data = model.training_data()
    uniform = np.full((1, model.n_states, 4), 0.25)
    scores = decomposed_scores(model, np.concatenate([model.optimal_matrix[None], uniform]), data.demos)
    assert scores["mse_optimal_visits"][0] == 0 and scores["mse_own_visits"][0] == 0
    assert scores["optimal_mass_own_visits"][0] == pytest.approx(1.0)
    assert 0 < scores["optimal_mass_own_visits"][1] < 1
