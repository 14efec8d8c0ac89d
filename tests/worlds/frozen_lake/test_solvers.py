"""The sparse exact solvers against a dense reference: every catalogue map and 100 random maps, to 1e-10.

The solvers (``solvers.py``) switch to sparse linear algebra above ``DENSE_STATES`` cells; here the switch is set
to 0, so the small maps go through the same sparse path as a 256 x 256 map would, and the references are computed
densely, by other means.
"""

from __future__ import annotations

import numpy as np
import pytest

import iftgym.worlds.frozen_lake.solvers as solvers_module
from iftgym import FrozenLakeMDP, random_map
from iftgym.worlds.frozen_lake.maps import catalogue

DYNAMICS = [(False, 1 / 3), (True, 1 / 3), (True, 0.8)]
CASES = [(name, slippery, rate) for name in sorted(catalogue()) for slippery, rate in DYNAMICS] + [
    (f"random-{seed}", seed % 2 == 1, 0.5 + 0.05 * (seed % 7)) for seed in range(100)
]


def build(name: str, slippery: bool, rate: float) -> FrozenLakeMDP:
    if name.startswith("random-"):
        seed = int(name.split("-")[1])
        shape = (3 + seed % 10, 3 + (seed * 7) % 12)
        spec = random_map(shape, p_hole=(0.0, 0.1, 0.2, 0.3)[seed % 4], seed=seed)
    else:
        spec = name
    return FrozenLakeMDP.from_map(spec, slippery=slippery, success_rate=rate, gamma=0.9)


def policies(model: FrozenLakeMDP, seed: int) -> np.ndarray:
    """Three policy matrices: a random stochastic one, a peaked one (every action at least 1/400), and a
    deterministic one. (A policy that leaves a loop with probability 1e-12 makes every linear solve of success
    ill-conditioned; see test_a_near_certain_loop_into_the_goal_succeeds_surely.)"""
    rng = np.random.default_rng(seed)
    uniform = rng.dirichlet(np.ones(4), size=model.n_states)
    peaked = 0.99 * rng.dirichlet(np.full(4, 0.1), size=model.n_states) + 0.0025
    greedy = np.eye(4)[rng.integers(0, 4, size=model.n_states)]
    return np.stack([uniform, peaked, greedy])


def reference_values(model: FrozenLakeMDP, policy: np.ndarray, gamma: float) -> np.ndarray:
    chain = np.einsum("sa,sat->st", policy, model.P)
    return np.linalg.solve(np.eye(model.n_states) - gamma * chain, (policy * model.R).sum(1))


def reference_success(model: FrozenLakeMDP, policy: np.ndarray) -> np.ndarray:
    """P(ever reaching a goal) from every state: 0 where no goal can be reached, 1 where no such state can be
    reached (both from the transitive closure, by squaring the boolean reachability matrix), and a dense solve
    over the states between."""
    chain = np.einsum("sa,sat->st", policy, model.P)
    reach = (chain > 0) | np.eye(model.n_states, dtype=bool)
    for _ in range(int(np.ceil(np.log2(model.n_states))) + 1):
        reach = (reach.astype(float) @ reach.astype(float)) > 0
    never = ~reach[:, model.goal_mask].any(1)
    surely = ~reach[:, never].any(1)
    probs = surely.astype(float)
    between = np.flatnonzero(~never & ~surely)
    inner = np.eye(between.size) - chain[np.ix_(between, between)]
    probs[between] = np.linalg.solve(inner, chain[np.ix_(between, np.flatnonzero(surely))].sum(1))
    return probs


def reference_occupancy(model: FrozenLakeMDP, policy: np.ndarray, gamma: float) -> np.ndarray:
    chain = np.einsum("sa,sat->st", policy, model.P) * (~model.terminal)[:, None]
    start = np.eye(model.n_states)[model.start]
    return np.linalg.solve((np.eye(model.n_states) - gamma * chain).T, start)


@pytest.fixture
def sparse_only(monkeypatch):
    monkeypatch.setattr(solvers_module, "DENSE_STATES", 0)


@pytest.mark.parametrize(("name", "slippery", "rate"), CASES)
def test_sparse_solvers_equal_the_dense_reference(sparse_only, name, slippery, rate):
    model = build(name, slippery, rate)
    matrices = policies(model, seed=len(name))
    assert not isinstance(model.chain(matrices[0]), np.ndarray)  # the sparse path is the one under test
    values = model.evaluate(matrices)
    success = model.success_probability(matrices, state="all")
    occupancy = model.occupancy(matrices)
    for k, policy in enumerate(matrices):
        np.testing.assert_allclose(values[k], reference_values(model, policy, 0.9), rtol=0, atol=1e-10)
        np.testing.assert_allclose(success[k], reference_success(model, policy), rtol=0, atol=1e-10)
        np.testing.assert_allclose(occupancy[k], reference_occupancy(model, policy, 0.9), rtol=0, atol=1e-10)
    V, _, optimal = model.value_iteration()
    np.testing.assert_allclose(reference_values(model, optimal, 0.9), V, rtol=0, atol=1e-10)
    assert (values - 1e-10 <= V).all()  # no policy does better anywhere


@pytest.mark.parametrize(("name", "slippery", "rate"), CASES[::7])
def test_dense_and_sparse_paths_agree(monkeypatch, name, slippery, rate):
    model = build(name, slippery, rate)
    matrices = policies(model, seed=1)
    dense = model.scores(matrices)
    dense_vi = model.value_iteration(0.95)[0]
    monkeypatch.setattr(solvers_module, "DENSE_STATES", 0)
    sparse_model = build(name, slippery, rate)
    sparse = sparse_model.scores(matrices)
    for key in dense:
        np.testing.assert_allclose(sparse[key], dense[key], rtol=0, atol=1e-10)
    np.testing.assert_allclose(sparse_model.value_iteration(0.95)[0], dense_vi, rtol=0, atol=1e-10)


def test_threads_and_batching_do_not_change_a_value(sparse_only):
    model = build("random-7", True, 0.6)
    matrices = policies(model, seed=3)
    one = model.scores(matrices, threads=1)
    two = model.scores(matrices, threads=2)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])
    each = [model.success_probability(m) for m in matrices]
    np.testing.assert_array_equal(model.success_probability(matrices, threads=2), each)
    np.testing.assert_array_equal(model.occupancy(matrices, threads=2), [model.occupancy(m) for m in matrices])


def test_value_iteration_is_solved_once_and_returns_copies():
    model = build("paper", False, 1 / 3)
    first = model.value_iteration()
    first[0][:] = -1.0  # a caller writing into the result does not change the next answer
    again = model.value_iteration()
    assert (again[0] >= 0).all()
    assert len(model.solver._solutions) == 1


@pytest.mark.parametrize("dense", [True, False])
def test_a_near_certain_loop_into_the_goal_succeeds_surely(monkeypatch, dense):
    # No holes: whatever the policy, G is reached with probability 1. Here each cell keeps its loop with
    # probability 1 - 1e-12, so a solve over all cells is ill-conditioned (condition ~1e14; it gave 1.0006).
    if not dense:
        monkeypatch.setattr(solvers_module, "DENSE_STATES", 0)
    model = FrozenLakeMDP.from_map(["SFF", "FFF", "FFG"])
    policy = np.full((9, 4), 1e-12)
    policy[[0, 1, 2, 3, 4, 5, 6, 7, 8], [2, 0, 3, 2, 0, 3, 2, 0, 3]] = 1 - 3e-12  # right-left and down-up loops
    np.testing.assert_array_equal(model.success_probability(policy, state="all"), np.ones(9))


@pytest.mark.parametrize(("name", "slippery", "rate"), CASES[::7])
def test_a_matrix_scores_the_same_alone_as_beside_others(name, slippery, rate):
    """Each seed's scores do not depend on how many policies are scored with it, to the last bit."""
    model = build(name, slippery, rate)
    matrices = policies(model, seed=2)
    together = model.scores(matrices)
    alone = [model.scores(matrix[None]) for matrix in matrices]
    for key, values in together.items():
        np.testing.assert_array_equal(values, [scores[key][0] for scores in alone])
