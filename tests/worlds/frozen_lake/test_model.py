"""The exact Frozen Lake model: Gymnasium's dynamics, the solvers, routes, demonstrations, rollouts and scores."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv as GymFrozenLake
from hypothesis import given, settings
from hypothesis import strategies as st

import iftgym  # noqa: F401  (registers iftgym/FrozenLake-v0)
from iftgym import FrozenLakeMDP, PreferencePair, World, random_map
from iftgym.worlds.frozen_lake.maps import (
    catalogue,  # not `from iftgym import catalogue`: see test_maps.py (shadowed by a subpackage)
)

LEFT, DOWN, RIGHT, UP = range(4)


CATALOGUE_NAMES = ("4x4", "8x8", "bridge-3x8", "detour-5x5", "lake-10x10", "paper")


# (slippery, success_rate): deterministic, and slippery with several success rates (1.0 is slippery in name only).
DYNAMICS = [(False, 1 / 3), (True, 1 / 3), (True, 0.5), (True, 0.8), (True, 0.9), (True, 1.0)]


def _random_map_cases() -> list[tuple[int, tuple[int, int], float]]:
    """60 (seed, (rows, cols), p_hole) cases: sizes 4..12, square and not, several hole rates."""
    cases = []
    for seed in range(60):
        side = 4 + seed % 9
        other = 4 + (seed * 5) % 9
        shape = (side, side) if seed % 3 else (side, other)
        p_hole = (0.0, 0.1, 0.2, 0.3, 0.4)[seed % 5]
        cases.append((seed, shape, p_hole))
    return cases


RANDOM_MAP_CASES = _random_map_cases()


# -- Gymnasium's transition table -----------------------------------------------------------------------------
def gymnasium_tables(desc, slippery, success_rate):
    """Gymnasium's FrozenLake-v1 ``P`` dict turned into arrays, plus the raw entries."""
    env = GymFrozenLake(desc=list(desc), is_slippery=slippery, success_rate=success_rate)
    n = env.observation_space.n
    P = np.zeros((n, 4, n))
    R = np.zeros((n, 4))
    entries = []
    for s, by_action in env.P.items():
        for a, outcomes in by_action.items():
            for prob, nxt, reward, done in outcomes:
                P[s, a, nxt] += prob
                R[s, a] += prob * reward
                entries.append((s, a, prob, nxt, reward, done))
    start = int(np.flatnonzero(env.initial_state_distrib)[0])
    return P, R, entries, start


def assert_matches_gymnasium(desc, slippery, success_rate):
    mdp = FrozenLakeMDP.from_map(list(desc), slippery=slippery, success_rate=success_rate)
    P, R, entries, start = gymnasium_tables(desc, slippery, success_rate)
    assert mdp.P.shape == P.shape == (len(desc) * len(desc[0]), 4, len(desc) * len(desc[0]))
    np.testing.assert_array_equal(mdp.P, P)
    np.testing.assert_allclose(mdp.R, R, rtol=0, atol=1e-15)
    assert mdp.start == start
    s, a, _, nxt, reward, done = (np.array(column) for column in zip(*entries))
    # Gymnasium's terminated flag is whether the next state is a hole or a goal (always true out of one).
    np.testing.assert_array_equal(mdp.terminal[nxt], done.astype(bool))
    # Per-transition reward: 1 on entering a goal from a non-terminal state.
    ours = [mdp.reward(*sas) for sas in zip(s.tolist(), a.tolist(), nxt.tolist())]
    np.testing.assert_array_equal(ours, reward)
    for s_, a_ in [(mdp.start, 0), (mdp.start, 2), (len(P) - 1, 1)]:
        assert mdp.transition(s_, a_) == {int(t): float(P[s_, a_, t]) for t in np.flatnonzero(P[s_, a_])}
    terminal_tiles = np.array([c in "HG" for row in desc for c in row])
    np.testing.assert_array_equal(mdp.terminal, terminal_tiles)
    np.testing.assert_allclose(mdp.P.sum(axis=2), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("seed", "shape", "p_hole"), RANDOM_MAP_CASES)
def test_P_equals_gymnasium_on_random_maps(seed, shape, p_hole):
    desc = random_map(shape, p_hole=p_hole, seed=seed)
    for slippery, success_rate in DYNAMICS:
        assert_matches_gymnasium(desc, slippery, success_rate)


def test_random_map_cases_cover_the_required_range():
    shapes = {shape for _, shape, _ in RANDOM_MAP_CASES}
    assert len(RANDOM_MAP_CASES) >= 50
    assert {s for shape in shapes for s in shape} == set(range(4, 13))
    assert any(r != c for r, c in shapes)


@pytest.mark.parametrize("name", CATALOGUE_NAMES)
def test_P_equals_gymnasium_on_catalogue_maps(name):
    desc = catalogue()[name]
    for slippery, success_rate in [*DYNAMICS, (True, 0.05), (True, 0.999)]:
        assert_matches_gymnasium(desc, slippery, success_rate)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    nrow=st.integers(1, 12),
    ncol=st.integers(2, 12),
    p_hole=st.floats(0.0, 0.5),
    success_rate=st.floats(0.01, 1.0),
)
def test_P_equals_gymnasium_hypothesis(seed, nrow, ncol, p_hole, success_rate):
    desc = random_map((nrow, ncol), p_hole=p_hole, seed=seed)
    assert_matches_gymnasium(desc, True, success_rate)
    assert_matches_gymnasium(desc, False, success_rate)


def test_P_of_the_default_gymnasium_4x4_map_by_name():
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True).unwrapped
    mdp = FrozenLakeMDP.from_map("4x4", slippery=True)
    for s in range(16):
        for a in range(4):
            expected = {}
            for prob, nxt, _, _ in env.P[s][a]:
                expected[nxt] = expected.get(nxt, 0.0) + prob
            assert mdp.transition(s, a) == pytest.approx(expected, abs=1e-15)


def test_slippery_transition_by_hand():
    # 3x3 open map, from the centre: intended direction with 0.6, each perpendicular side with 0.2.
    mdp = FrozenLakeMDP.from_map(["SFF", "FFF", "FFG"], slippery=True, success_rate=0.6)
    assert mdp.transition(4, LEFT) == pytest.approx({3: 0.6, 7: 0.2, 1: 0.2})  # LEFT, DOWN, UP
    assert mdp.transition(4, UP) == pytest.approx({1: 0.6, 5: 0.2, 3: 0.2})  # UP, RIGHT, LEFT
    # From the top-left corner LEFT and UP bump into the wall and stay.
    assert mdp.transition(0, LEFT) == pytest.approx({0: 0.8, 3: 0.2})
    # Entering the goal pays 1 times its probability.
    assert mdp.R[5, DOWN] == pytest.approx(0.6)
    assert mdp.R[7, DOWN] == pytest.approx(0.2)
    assert mdp.R[8].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_holes_and_goals_are_absorbing_with_zero_reward():
    mdp = FrozenLakeMDP.from_map(["SHG", "FFF"], slippery=True)
    for s in (1, 2):
        for a in range(4):
            assert mdp.transition(s, a) == {s: 1.0}
            assert mdp.R[s, a] == 0.0
            assert mdp.reward(s, a, s) == 0.0
        assert mdp.is_terminal(s)
    assert not mdp.is_terminal(0)


@pytest.mark.parametrize("success_rate", [0, 0.0, -0.1, 1.5, 1.0000001])
def test_success_rate_out_of_range(success_rate):
    with pytest.raises(
        ValueError, match=rf"^success_rate={success_rate} is out of range: expected 0 < success_rate <= 1$"
    ):
        FrozenLakeMDP.from_map("4x4", slippery=True, success_rate=success_rate)


def test_success_rate_one_is_allowed_and_deterministic():
    slippery = FrozenLakeMDP.from_map("paper", slippery=True, success_rate=1.0)
    plain = FrozenLakeMDP.from_map("paper", slippery=False)
    np.testing.assert_array_equal(slippery.P, plain.P)


def test_from_map_accepts_file_and_rows(tmp_path):
    path = tmp_path / "lake.txt"
    path.write_text("# tiny lake\nSF\nHG\n")
    by_file = FrozenLakeMDP.from_map(path)
    by_rows = FrozenLakeMDP.from_map(["SF", "HG"])
    assert by_file.desc == by_rows.desc == ("SF", "HG")
    np.testing.assert_array_equal(by_file.P, by_rows.P)


def test_from_map_rejects_malformed_maps():
    with pytest.raises(ValueError, match="map must have exactly one start S, found 2"):
        FrozenLakeMDP.from_map(["SS", "FG"])
    with pytest.raises(ValueError, match="unknown map 'nope'"):
        FrozenLakeMDP.from_map("nope")


# -- the World contract -----------------------------------------------------------------------------------------
def test_frozen_lake_implements_the_mdp_protocol():
    mdp = FrozenLakeMDP.from_map("paper", slippery=True, success_rate=0.5)
    assert isinstance(mdp, World)
    assert (mdp.nrow, mdp.ncol, mdp.n_states, mdp.n_ids, mdp.n_actions) == (6, 6, 36, 36, 4)
    assert mdp.start_distribution() == {0: 1.0}
    assert mdp.input_id(7) == 7
    assert mdp.tile(0) == "S"
    assert mdp.tile(21) == "G"
    assert mdp.tile(7) == "H"
    assert np.flatnonzero(mdp.goal_mask).tolist() == [21]
    ids = torch.tensor([[0, 6], [20, 21]])
    actions = torch.tensor([[DOWN, RIGHT], [RIGHT, UP]])
    probs = mdp.successor_probs(ids, actions)
    assert probs.shape == (2, 2, 36)
    assert probs.dtype == torch.float32
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(probs[i, j].numpy(), mdp.P[ids[i, j], actions[i, j]], atol=1e-7)
    assert torch.equal(mdp.successor_probs(ids, actions), probs)  # built from the sparse successors, cached


# -- value iteration ------------------------------------------------------------------------------------------
def plain_value_iteration(desc, slippery, success_rate, gamma, tol=1e-14):
    """Textbook value iteration in plain Python on Gymnasium's own ``P`` dict (terminal transitions bootstrap 0)."""
    env = GymFrozenLake(desc=list(desc), is_slippery=slippery, success_rate=success_rate)
    n = env.observation_space.n
    V = [0.0] * n
    while True:
        delta = 0.0
        new = [0.0] * n
        for s in range(n):
            best = -math.inf
            for a in range(4):
                q = 0.0
                for prob, nxt, reward, done in env.P[s][a]:
                    q += prob * (reward + (0.0 if done else gamma * V[nxt]))
                best = max(best, q)
            new[s] = 0.0 if desc[s // len(desc[0])][s % len(desc[0])] in "HG" else best
            delta = max(delta, abs(new[s] - V[s]))
        V = new
        if delta < tol:
            break
    V = np.array(V)
    Q = np.zeros((n, 4))
    for s in range(n):
        for a in range(4):
            for prob, nxt, reward, done in env.P[s][a]:
                Q[s, a] += prob * (reward + (0.0 if done else gamma * V[nxt]))
    return V, Q


def policy_iteration(mdp, gamma):
    """Howard's policy iteration with numpy linear solves, written independently of the library."""
    n = mdp.n_states
    alive = ~mdp.terminal
    R = np.zeros((n, 4))
    for s in range(n):
        for a in range(4):
            for nxt, prob in mdp.transition(s, a).items():
                R[s, a] += prob * mdp.reward(s, a, nxt)
    P = mdp.P * alive[:, None, None]
    actions = np.zeros(n, dtype=int)
    for _ in range(1000):
        P_pi = P[np.arange(n), actions]
        V = np.linalg.solve(np.eye(n) - gamma * P_pi, R[np.arange(n), actions])
        Q = R + gamma * P @ V
        better = Q.max(axis=1) > Q[np.arange(n), actions] + 1e-12
        if not better.any():
            return V, Q
        actions = np.where(better, Q.argmax(axis=1), actions)
    raise AssertionError("policy iteration did not converge")


VI_CASES = [
    ("paper", False, 1 / 3, 0.9),
    ("paper", True, 1 / 3, 0.95),
    ("4x4", True, 1 / 3, 0.95),
    ("4x4", True, 0.8, 0.5),
    ("detour-5x5", True, 0.6, 0.9),
    ("bridge-3x8", False, 1 / 3, 0.99),
    ("bridge-3x8", True, 0.7, 0.9),
    ("8x8", True, 0.5, 0.9),
]


@pytest.mark.parametrize(("name", "slippery", "success_rate", "gamma"), VI_CASES)
def test_value_iteration_matches_plain_python_value_iteration(name, slippery, success_rate, gamma):
    desc = catalogue()[name]
    mdp = FrozenLakeMDP.from_map(name, slippery=slippery, success_rate=success_rate)
    V, Q, _ = mdp.value_iteration(gamma)
    V_ref, Q_ref = plain_value_iteration(desc, slippery, success_rate, gamma)
    np.testing.assert_allclose(V, V_ref, rtol=0, atol=1e-9)
    alive = ~mdp.terminal
    np.testing.assert_allclose(Q[alive], Q_ref[alive], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(Q[~alive], 0.0)
    assert V[mdp.start] > 0


RANDOM_VI_CASES = [(seed, *RANDOM_MAP_CASES[seed][1:], dyn) for seed, dyn in zip(range(0, 60, 3), DYNAMICS * 4)]


@pytest.mark.parametrize(("seed", "shape", "p_hole", "dynamics"), RANDOM_VI_CASES)
def test_value_iteration_matches_policy_iteration_on_random_maps(seed, shape, p_hole, dynamics):
    slippery, success_rate = dynamics
    mdp = FrozenLakeMDP.from_map(
        random_map(shape, p_hole=p_hole, seed=seed), slippery=slippery, success_rate=success_rate
    )
    gamma = 0.9 + 0.01 * (seed % 9)
    V, Q, policy = mdp.value_iteration(gamma)
    V_ref, Q_ref = policy_iteration(mdp, gamma)
    np.testing.assert_allclose(V, V_ref, rtol=0, atol=1e-9)
    alive = ~mdp.terminal
    np.testing.assert_allclose(Q[alive], Q_ref[alive], rtol=0, atol=1e-9)
    # The returned policy is optimal: its exact value is V*, and it only uses optimal actions.
    np.testing.assert_allclose(mdp.evaluate(policy, gamma), V, rtol=0, atol=1e-9)
    np.testing.assert_allclose(mdp.evaluate(mdp.optimal_policy(gamma), gamma), V, rtol=0, atol=1e-9)
    np.testing.assert_allclose(policy.sum(axis=1), 1.0)
    assert (policy[alive][Q_ref[alive] < Q_ref[alive].max(axis=1, keepdims=True) - 1e-8] == 0).all()


def test_value_iteration_by_hand_on_a_deterministic_corridor():
    mdp = FrozenLakeMDP.from_map(["SFG"])
    V, Q, policy = mdp.value_iteration(gamma=0.9)
    np.testing.assert_allclose(V, [0.9, 1.0, 0.0], rtol=0, atol=1e-12)
    # From S: RIGHT reaches F (0.9), the others bump into walls and stay (0.9 * 0.9).
    np.testing.assert_allclose(Q[0], [0.81, 0.81, 0.9, 0.81], rtol=0, atol=1e-12)
    # From F: RIGHT enters G (1), LEFT goes back to S (0.9 * 0.9), DOWN/UP stay (0.9 * 1).
    np.testing.assert_allclose(Q[1], [0.81, 0.9, 1.0, 0.9], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(Q[2], 0.0)
    np.testing.assert_array_equal(policy[0], [0, 0, 1, 0])
    np.testing.assert_array_equal(policy[1], [0, 0, 1, 0])
    np.testing.assert_array_equal(policy[2], [0.25, 0.25, 0.25, 0.25])  # terminal rows are uniform
    np.testing.assert_allclose(mdp.evaluate(policy, 0.9), [0.9, 1.0, 0.0], rtol=0, atol=1e-12)


def test_value_iteration_by_hand_on_a_slippery_pair_splits_ties():
    # "SG", success rate 1/3: DOWN, RIGHT and UP each slide into G with probability 1/3, else stay.
    # V = 1/3 + (2/3) * gamma * V  ->  V = (1/3) / (1 - 2 gamma / 3) = 0.5 for gamma = 0.5; LEFT never reaches G.
    mdp = FrozenLakeMDP.from_map(["SG"], slippery=True, success_rate=1 / 3)
    V, Q, policy = mdp.value_iteration(gamma=0.5)
    np.testing.assert_allclose(V, [0.5, 0.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(Q[0], [0.25, 0.5, 0.5, 0.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(policy[0], [0, 1 / 3, 1 / 3, 1 / 3], rtol=0, atol=1e-15)
    assert mdp.success_probability(policy) == pytest.approx(1.0, abs=1e-12)


def test_gamma_zero_values_are_immediate_rewards():
    mdp = FrozenLakeMDP.from_map(["SFG"])
    V, Q, _ = mdp.value_iteration(gamma=0.0)
    np.testing.assert_array_equal(V, [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(Q, mdp.R)


@pytest.mark.parametrize("gamma", [1.0, 1.5, -0.1])
def test_gamma_out_of_range(gamma):
    mdp = FrozenLakeMDP.from_map("4x4")
    policy = np.full((16, 4), 0.25)
    message = rf"^gamma={gamma} is out of range: expected 0 <= gamma < 1$"
    with pytest.raises(ValueError, match=message):
        mdp.value_iteration(gamma)
    with pytest.raises(ValueError, match=message):
        mdp.evaluate(policy, gamma)
    with pytest.raises(ValueError, match=message):
        mdp.occupancy(policy, gamma)
    with pytest.raises(ValueError, match=message):
        mdp.optimal_policy(gamma)


def test_policy_matrix_is_checked():
    mdp = FrozenLakeMDP.from_map("4x4")
    with pytest.raises(
        ValueError, match=r"policy matrix has shape \(16, 3\), expected \(n_states, n_actions\) = \(16, 4\)"
    ):
        mdp.evaluate(np.full((16, 3), 1 / 3))
    bad = np.full((16, 4), 0.25)
    bad[3] = [0.5, 0.5, 0.5, 0.0]
    with pytest.raises(ValueError, match="policy matrix rows must be probability distributions"):
        mdp.success_probability(bad)
    negative = np.full((16, 4), 0.25)
    negative[0] = [1.5, -0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="policy matrix rows must be probability distributions"):
        mdp.occupancy(negative)


def test_evaluate_by_hand_for_a_stochastic_policy():
    # "SG" deterministic; at S go RIGHT with probability p, else stay (LEFT): V = p + (1 - p) gamma V.
    mdp = FrozenLakeMDP.from_map(["SG"])
    p, gamma = 0.3, 0.8
    policy = np.array([[1 - p, 0, p, 0], [0.25] * 4])
    expected = p / (1 - (1 - p) * gamma)
    np.testing.assert_allclose(mdp.evaluate(policy, gamma), [expected, 0.0], rtol=0, atol=1e-12)


# -- success probability --------------------------------------------------------------------------------------
def test_success_probability_by_hand_on_a_slippery_square():
    # "SF/HG", success rate 1/2; RIGHT at S (right 1/2, into the hole 1/4, stay 1/4), DOWN at F (goal 1/2,
    # back to S 1/4, stay 1/4):  x = y/2 + x/4,  y = 1/2 + x/4 + y/4  ->  y = 6/7, x = 4/7.
    mdp = FrozenLakeMDP.from_map(["SF", "HG"], slippery=True, success_rate=0.5)
    policy = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [0.25] * 4, [0.25] * 4])
    assert mdp.success_probability(policy) == pytest.approx(4 / 7, abs=1e-12)
    assert mdp.success_probability(policy, state=1) == pytest.approx(6 / 7, abs=1e-12)
    np.testing.assert_allclose(mdp.success_probability(policy, state="all"), [4 / 7, 6 / 7, 0, 1], atol=1e-12)


def test_success_probability_is_zero_for_a_policy_that_loops_forever():
    mdp = FrozenLakeMDP.from_map("paper")
    always_left = np.tile([1.0, 0.0, 0.0, 0.0], (mdp.n_states, 1))
    assert mdp.success_probability(always_left) == 0.0
    # Looping between two cells (RIGHT at S, LEFT at its neighbour) never reaches G either.
    ping_pong = always_left.copy()
    ping_pong[0] = [0, 0, 1, 0]
    assert mdp.success_probability(ping_pong) == 0.0
    slippery = FrozenLakeMDP.from_map("paper", slippery=True)
    # Slipping while pushing LEFT only moves up or down the left column: G stays out of reach.
    assert slippery.success_probability(always_left) == 0.0
    # Pushing DOWN slips sideways, so G (entered from the left along row 3) is reached sometimes.
    always_down = np.tile([0.0, 1.0, 0.0, 0.0], (mdp.n_states, 1))
    assert mdp.success_probability(always_down) == 0.0
    assert 0.0 < slippery.success_probability(always_down) < 1.0


def test_success_probability_of_optimal_policy_is_one_on_deterministic_maps():
    for name, desc in catalogue().items():
        mdp = FrozenLakeMDP.from_map(desc)
        for gamma in (0.5, 0.95):
            assert mdp.success_probability(mdp.value_iteration(gamma)[2]) == pytest.approx(1.0, abs=1e-12), name
            assert mdp.success_probability(mdp.optimal_policy(gamma)) == pytest.approx(1.0, abs=1e-12), name
    for seed, shape, p_hole in RANDOM_MAP_CASES[:20]:
        mdp = FrozenLakeMDP.from_map(random_map(shape, p_hole=p_hole, seed=seed))
        assert mdp.success_probability(mdp.optimal_policy()) == pytest.approx(1.0, abs=1e-12), seed


def test_optimal_value_is_discounted_shortest_route_on_deterministic_maps():
    gamma = 0.9
    for seed, shape, p_hole in RANDOM_MAP_CASES[::4]:
        mdp = FrozenLakeMDP.from_map(random_map(shape, p_hole=p_hole, seed=seed))
        moves = len(mdp.optimal_route()) - 1
        V = mdp.value_iteration(gamma)[0]
        assert V[mdp.start] == pytest.approx(gamma ** (moves - 1), abs=1e-10)
        demo = mdp.optimal_demonstration(gamma)
        assert len(demo) == moves
        assert demo.rewards == (0.0,) * (moves - 1) + (1.0,)


def test_success_probability_is_the_limit_of_the_state_distributions():
    mdp = FrozenLakeMDP.from_map("8x8", slippery=True, success_rate=0.6)
    policy = 0.7 * mdp.optimal_policy(0.99) + 0.3 / 4
    dists = mdp.state_distributions(policy, 3000)
    np.testing.assert_allclose(dists.sum(axis=1), 1.0, atol=1e-9)
    assert dists[-1][mdp.goal_mask].sum() == pytest.approx(mdp.success_probability(policy), abs=1e-8)
    # Goal mass only grows.
    assert (np.diff(dists[:, mdp.goal_mask].sum(axis=1)) >= -1e-15).all()


def test_success_probability_matches_monte_carlo_of_the_gymnasium_env():
    mdp = FrozenLakeMDP.from_map("4x4", slippery=True, success_rate=0.8)
    policy = 0.8 * mdp.optimal_policy(0.99) + 0.2 / 4  # stochastic everywhere
    exact = mdp.success_probability(policy)
    assert 0.2 < exact < 0.8  # not a degenerate case
    env = gym.make("iftgym/FrozenLake-v0", map="4x4", slippery=True, success_rate=0.8)
    horizon = env.unwrapped.max_episode_steps
    # Episodes are truncated at ``horizon`` steps: the mass still alive then bounds the truncation bias.
    alive_at_horizon = mdp.state_distributions(policy, horizon)[-1][~mdp.terminal].sum()
    assert alive_at_horizon < 1e-4
    rng = np.random.default_rng(2024)
    cumulative = np.cumsum(policy, axis=1)
    episodes, successes = 4000, 0
    obs, _ = env.reset(seed=7)
    for episode in range(episodes):
        if episode:
            obs, _ = env.reset()
        while True:
            action = min(int(np.searchsorted(cumulative[obs], rng.random(), side="right")), 3)
            obs, reward, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        successes += reward == 1.0
    # Two-sided Hoeffding bound at 99.9% confidence.
    half_width = math.sqrt(math.log(2 / 0.001) / (2 * episodes))
    assert abs(successes / episodes - exact) <= half_width + alive_at_horizon
    env.close()


# -- occupancy ------------------------------------------------------------------------------------------------
def test_occupancy_on_a_deterministic_corridor_is_gamma_to_the_t():
    gamma = 0.9
    mdp = FrozenLakeMDP.from_map(["SFFFG"])
    right = np.tile([0.0, 0.0, 1.0, 0.0], (5, 1))
    occupancy = mdp.occupancy(right, gamma)
    np.testing.assert_allclose(occupancy, gamma ** np.arange(5), rtol=0, atol=1e-12)
    assert occupancy.sum() == pytest.approx((1 - gamma**5) / (1 - gamma), abs=1e-12)
    # Value at the start is the occupancy-weighted expected reward.
    r_pi = (right * mdp.R).sum(axis=1)
    assert occupancy @ r_pi == pytest.approx(mdp.evaluate(right, gamma)[0], abs=1e-12)
    assert occupancy @ r_pi == pytest.approx(gamma**3, abs=1e-12)


def test_occupancy_on_a_corridor_with_a_hole_off_the_path():
    gamma = 0.5
    mdp = FrozenLakeMDP.from_map(["SFG", "HHH"])
    right = np.tile([0.0, 0.0, 1.0, 0.0], (6, 1))
    np.testing.assert_allclose(mdp.occupancy(right, gamma), [1, 0.5, 0.25, 0, 0, 0], rtol=0, atol=1e-12)


def test_occupancy_of_a_policy_that_stays_forever():
    gamma = 0.8
    mdp = FrozenLakeMDP.from_map(["SFG"])
    left = np.tile([1.0, 0.0, 0.0, 0.0], (3, 1))
    np.testing.assert_allclose(mdp.occupancy(left, gamma), [1 / (1 - gamma), 0, 0], rtol=0, atol=1e-12)


def test_occupancy_matches_discounted_state_distributions_on_a_slippery_map():
    gamma = 0.9
    mdp = FrozenLakeMDP.from_map("detour-5x5", slippery=True, success_rate=0.7)
    policy = 0.6 * mdp.optimal_policy(gamma) + 0.1
    occupancy = mdp.occupancy(policy, gamma)
    steps = 600
    dists = mdp.state_distributions(policy, steps)
    discounts = gamma ** np.arange(steps + 1)
    alive = ~mdp.terminal
    # Non-terminal states: discounted sum of the distributions. Terminal states: counted once, on entry.
    np.testing.assert_allclose(occupancy[alive], (discounts[:, None] * dists[:, alive]).sum(axis=0), atol=1e-12)
    entries = np.diff(dists[:, ~alive], axis=0)
    np.testing.assert_allclose(occupancy[~alive], (discounts[1:, None] * entries).sum(axis=0), atol=1e-12)
    r_pi = (policy * mdp.R).sum(axis=1)
    assert occupancy @ r_pi == pytest.approx(mdp.evaluate(policy, gamma)[mdp.start], abs=1e-12)


def test_state_distributions_on_a_corridor():
    mdp = FrozenLakeMDP.from_map(["SFG"])
    right = np.tile([0.0, 0.0, 1.0, 0.0], (3, 1))
    np.testing.assert_array_equal(mdp.state_distributions(right, 3), np.eye(3)[[0, 1, 2, 2]])


# -- routes and demonstrations --------------------------------------------------------------------------------
def hole_free_simple_routes(desc):
    """Every simple path from S to a goal over non-hole cells, by depth-first search."""
    nrow, ncol = len(desc), len(desc[0])
    start = next((r, c) for r in range(nrow) for c in range(ncol) if desc[r][c] == "S")
    routes = []

    def extend(path):
        r, c = path[-1]
        if desc[r][c] == "G":
            routes.append(list(path))
            return
        for dr, dc in ((0, -1), (1, 0), (0, 1), (-1, 0)):
            nxt = (r + dr, c + dc)
            if 0 <= nxt[0] < nrow and 0 <= nxt[1] < ncol and desc[nxt[0]][nxt[1]] != "H" and nxt not in path:
                path.append(nxt)
                extend(path)
                path.pop()

    extend([start])
    return routes


def test_paper_map_has_exactly_two_hole_free_routes():
    mdp = FrozenLakeMDP.from_map("paper")
    routes = sorted(hole_free_simple_routes(mdp.desc), key=len)
    assert len(routes) == 2
    assert routes[0] == mdp.optimal_route()
    assert routes[1] == mdp.suboptimal_route()


def test_paper_map_routes():
    mdp = FrozenLakeMDP.from_map("paper")
    optimal, suboptimal = mdp.optimal_route(), mdp.suboptimal_route()
    assert optimal == [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3)]
    assert suboptimal == [
        (0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5),
        (1, 5), (2, 5), (3, 5), (4, 5), (5, 5),
        (5, 4), (5, 3), (4, 3), (3, 3),
    ]  # fmt: skip
    assert len(suboptimal) > len(optimal)
    assert (len(optimal) - 1, len(suboptimal) - 1) == (6, 14)
    assert set(optimal[1:-1]).isdisjoint(suboptimal[1:-1])


def test_paper_map_demonstrations():
    gamma = 0.95
    mdp = FrozenLakeMDP.from_map("paper")
    best = mdp.optimal_demonstration(gamma)
    assert best.states == (0, 6, 12, 18, 19, 20, 21)
    assert best.actions == (DOWN, DOWN, DOWN, RIGHT, RIGHT, RIGHT)
    assert best.rewards == (0.0,) * 5 + (1.0,)
    assert best.ret == 1.0
    assert best.terminal
    assert mdp.tile(best.states[-1]) == "G"

    worse = mdp.suboptimal_demonstration(gamma)
    assert worse is not None
    assert worse.states == (0, 1, 2, 3, 4, 5, 11, 17, 23, 29, 35, 34, 33, 27, 21)
    assert worse.actions == (RIGHT,) * 5 + (DOWN,) * 5 + (LEFT,) * 2 + (UP,) * 2
    assert worse.rewards == (0.0,) * 13 + (1.0,)
    assert worse.ret == 1.0
    assert worse.terminal
    assert len(worse) > len(best)
    assert PreferencePair(best, worse).chosen is best


def test_paper_map_optimal_and_route_policies():
    gamma = 0.95
    mdp = FrozenLakeMDP.from_map("paper")
    optimal = mdp.optimal_policy(gamma)
    assert mdp.success_probability(optimal) == 1.0
    V = mdp.value_iteration(gamma)[0]
    assert V[mdp.start] == pytest.approx(gamma**5, abs=1e-12)
    assert mdp.evaluate(optimal, gamma)[mdp.start] == pytest.approx(gamma**5, abs=1e-12)
    # The value iteration policy is unique at the start (DOWN), no ties.
    np.testing.assert_array_equal(mdp.value_iteration(gamma)[2][mdp.start], [0, 1, 0, 0])
    detour = mdp.route_policy(mdp.suboptimal_route(), gamma)
    assert mdp.success_probability(detour) == 1.0
    assert mdp.evaluate(detour, gamma)[mdp.start] == pytest.approx(gamma**13, abs=1e-12)
    np.testing.assert_array_equal(optimal.sum(axis=1), 1.0)
    assert set(np.unique(optimal)) == {0.0, 1.0}


def test_suboptimal_route_is_none_without_an_alternative():
    mdp = FrozenLakeMDP.from_map(["SFG"])
    assert mdp.suboptimal_route() is None
    assert mdp.suboptimal_demonstration() is None


def test_rollout_is_reproducible_and_respects_max_steps():
    mdp = FrozenLakeMDP.from_map("4x4", slippery=True)
    policy = np.full((16, 4), 0.25)
    first = mdp.rollout(policy, rng=11)
    assert first == mdp.rollout(policy, rng=11)
    assert {mdp.rollout(policy, rng=seed).states for seed in range(10)} != {first.states}
    assert first.terminal
    assert mdp.is_terminal(first.states[-1])
    cut = mdp.rollout(np.tile([1.0, 0, 0, 0], (16, 1)), rng=0, max_steps=5)
    assert len(cut) <= 5
    looping = FrozenLakeMDP.from_map("paper").rollout(np.tile([1.0, 0, 0, 0], (36, 1)), max_steps=5)
    assert looping.states == (0,) * 6
    assert not looping.terminal
    assert looping.ret == 0.0
    assert len(FrozenLakeMDP.from_map("paper").rollout(np.tile([1.0, 0, 0, 0], (36, 1)))) == 4 * 36


def test_slippery_optimal_demonstration_is_a_valid_episode():
    mdp = FrozenLakeMDP.from_map("paper", slippery=True, success_rate=0.8)
    demo = mdp.optimal_demonstration(rng=3)
    assert demo == mdp.optimal_demonstration(rng=3)
    for s, a, nxt, r in zip(demo.states, demo.actions, demo.states[1:], demo.rewards):
        assert mdp.P[s, a, nxt] > 0
        assert r == mdp.reward(s, a, nxt)


def test_render_text_marks_the_position():
    mdp = FrozenLakeMDP.from_map(["SFG", "FHF"])
    assert mdp.render_text() == "SFG\nFHF"
    assert mdp.render_text(4) == "SFG\nF*F"


def test_first_arrival_times_are_breadth_first_distances():
    world = FrozenLakeMDP.from_map("paper")
    times = world.first_arrival_times()
    demo = world.optimal_demonstration()
    np.testing.assert_array_equal(times[list(demo.states)], np.arange(len(demo) + 1))
    assert times[7] == 2  # holes are entered (and never left)
    walled = FrozenLakeMDP.from_map(["SFG", "HHH", "FFF"]).first_arrival_times()
    np.testing.assert_array_equal(walled, [0, 1, 2, 1, 2, np.nan, np.nan, np.nan, np.nan])  # G is not passed


# -- scores: the metrics of a policy --------------------------------------------------------------------------
def test_metrics_of_hand_computed_policies() -> None:
    model = FrozenLakeMDP.from_map(["SFG"], gamma=0.9)
    optimal = np.array([[0, 0, 1, 0], [0, 0, 1, 0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_array_equal(model.optimal_matrix, optimal)
    uniform = np.full((3, 4), 0.25)
    metrics = model.scores(np.stack([optimal, uniform]))
    # Uniform vs optimal on the two live states: (0.75^2 + 3 * 0.25^2) / 4 per state.
    np.testing.assert_allclose(metrics["mse"], [0.0, 0.1875])
    # Uniform policy: from S, each step moves right w.p. 1/4 (LEFT/UP/DOWN stay or bounce back); it never
    # falls in a hole, so it reaches G with probability 1 eventually.
    np.testing.assert_allclose(metrics["success"], [1.0, 1.0])
    # The greedy version of the uniform policy takes the first best action, LEFT, forever: it never succeeds.
    np.testing.assert_allclose(metrics["greedy_success"], [1.0, 0.0])
    np.testing.assert_allclose(metrics["explored"], [3, 3])


def test_explored_counts_cells_above_the_occupancy_threshold() -> None:
    model = FrozenLakeMDP.from_map("paper")
    _, _, optimal = model.value_iteration(0.95)
    uniform = np.full((model.n_states, 4), 0.25)
    metrics = model.scores(np.stack([optimal, uniform]))
    occupancy = model.occupancy(uniform, 0.95)
    # The optimal policy visits the 7 cells of the short route (the tie at the far corner is never reached).
    assert metrics["explored"][0] == 7
    assert metrics["explored"][1] == (occupancy >= 0.01).sum() > 7


def test_greedy_success_of_a_looping_policy_is_zero() -> None:
    model = FrozenLakeMDP.from_map("paper")
    left = np.tile([1.0, 0, 0, 0], (model.n_states, 1))
    metrics = model.scores(left[None])
    assert metrics["success"][0] == 0.0 and metrics["greedy_success"][0] == 0.0
    assert metrics["mse"][0] > 0


def test_paper_map_second_route_is_the_long_way_round() -> None:
    model = FrozenLakeMDP.from_map("paper")
    assert len(model.second_route()) - 1 == 14 and len(model.optimal_route()) - 1 == 6
