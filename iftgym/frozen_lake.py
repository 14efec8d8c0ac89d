"""The exact tabular Frozen Lake model, its solvers and its demonstrations.

``FrozenLakeMDP.from_map`` builds the arrays ``P`` (S x A x S), ``R`` (S x A), ``terminal`` (S) and ``start``
with exactly Gymnasium's ``FrozenLake-v1`` dynamics: states are ``row * ncol + col``, actions 0 LEFT, 1 DOWN,
2 RIGHT, 3 UP; a slippery move goes the intended way with ``success_rate`` and to each perpendicular side with
half the rest; holes and goals are absorbing; reward 1 on entering a goal. Every solver here is exact linear
algebra or dynamic programming on those arrays.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from iftgym.maps import MOVES, Map, MapLike, load_map, shortest_route
from iftgym.mdp import StepBatch, Trajectory
from iftgym.policies.base import Policy
from iftgym.validate import between

ACTION_NAMES = ("LEFT", "DOWN", "RIGHT", "UP")
ACTION_ARROWS = ("←", "↓", "→", "↑")


def check_gamma(gamma: float) -> None:
    between("gamma", gamma, 0, 1, include_high=False)


@dataclass(frozen=True, eq=False)
class FrozenLakeMDP:
    """Exact model of a Frozen Lake map; implements :class:`iftgym.mdp.MDP` (states are cell indices)."""

    desc: Map
    slippery: bool
    success_rate: float
    P: np.ndarray = field(repr=False)
    R: np.ndarray = field(repr=False)
    terminal: np.ndarray = field(repr=False)
    start: int
    n_actions: int = 4

    @classmethod
    def from_map(cls, map: MapLike = "paper", slippery: bool = False, success_rate: float = 1 / 3) -> FrozenLakeMDP:
        """Build the model of a catalogue name, map file or list of rows."""
        between("success_rate", success_rate, 0, 1, include_low=False)
        desc = load_map(map)
        nrow, ncol = len(desc), len(desc[0])
        tiles = np.array([list(row) for row in desc])
        n = nrow * ncol
        terminal = np.isin(tiles, ["H", "G"]).ravel()
        goal = (tiles == "G").ravel()
        P = np.zeros((n, 4, n))
        fail = (1.0 - success_rate) / 2.0
        for s in range(n):
            row, col = divmod(s, ncol)
            for a in range(4):
                if terminal[s]:
                    P[s, a, s] = 1.0
                    continue
                outcomes = [((a - 1) % 4, fail), (a, success_rate), ((a + 1) % 4, fail)] if slippery else [(a, 1.0)]
                for b, prob in outcomes:
                    dr, dc = MOVES[b]
                    nxt = min(max(row + dr, 0), nrow - 1) * ncol + min(max(col + dc, 0), ncol - 1)
                    P[s, a, nxt] += prob
        R = P @ goal.astype(float) * ~terminal[:, None]
        start = int(np.flatnonzero(tiles.ravel() == "S")[0])
        return cls(desc, slippery, float(success_rate), P, R, terminal, start)

    # -- shape --------------------------------------------------------------------------------------------
    @property
    def nrow(self) -> int:
        return len(self.desc)

    @property
    def ncol(self) -> int:
        return len(self.desc[0])

    @property
    def n_states(self) -> int:
        return self.nrow * self.ncol

    @property
    def n_ids(self) -> int:
        return self.n_states

    def tile(self, state: int) -> str:
        row, col = divmod(state, self.ncol)
        return self.desc[row][col]

    @property
    def goal_mask(self) -> np.ndarray:
        return np.array([self.tile(s) == "G" for s in range(self.n_states)])

    # -- the MDP protocol ---------------------------------------------------------------------------------
    def start_distribution(self) -> Mapping[int, float]:
        return {self.start: 1.0}

    def transition(self, state: int, action: int) -> Mapping[int, float]:
        probs = self.P[state, action]
        return {int(s): float(probs[s]) for s in np.flatnonzero(probs)}

    def reward(self, state: int, action: int, next_state: int) -> float:
        return float(not self.terminal[state] and self.tile(next_state) == "G")

    def is_terminal(self, state: int) -> bool:
        return bool(self.terminal[state])

    def input_id(self, state: int) -> int:
        return int(state)

    def successor_probs(self, ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.P_tensor(ids.device)[ids, actions]

    def P_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``P`` as a float32 tensor (cached per device)."""
        cache = self.__dict__.setdefault("_P_cache", {})
        key = str(device)
        if key not in cache:
            cache[key] = torch.as_tensor(self.P, dtype=torch.float32, device=device)
        return cache[key]

    def sample(
        self, policy: Policy, n_episodes: int, generator: torch.Generator, max_steps: int | None = None
    ) -> StepBatch:
        """Roll out ``n_episodes`` per seed of a Markov policy, all seeds at once: a ``(K, n, T)`` batch.

        Episodes stop at a hole or goal, or after ``max_steps`` (default: 4 x number of cells).
        """
        probs = policy.action_probs().cpu()  # (K, S, A)
        action_cdf = probs.cumsum(-1)
        state_cdf = self.P_tensor().cumsum(-1)  # (S, A, S)
        terminal, goal = torch.as_tensor(self.terminal), torch.as_tensor(self.goal_mask)
        max_steps = 4 * self.n_states if max_steps is None else max_steps
        n_seeds = probs.shape[0]
        seed_index = torch.arange(n_seeds)[:, None]
        state = torch.full((n_seeds, n_episodes), self.start, dtype=torch.long)
        alive = torch.ones_like(state, dtype=torch.bool)
        ids, actions, masks, rewards = [], [], [], []
        for _ in range(max_steps):
            # Inverse-CDF sampling: one uniform per draw, clamped against round-off in the last CDF entry.
            u = torch.rand(2, n_seeds, n_episodes, 1, generator=generator)
            action = (u[0] > action_cdf[seed_index, state]).sum(-1).clamp(max=self.n_actions - 1)
            nxt = (u[1] > state_cdf[state, action]).sum(-1).clamp(max=self.n_states - 1)
            ids.append(state)
            actions.append(action)
            masks.append(alive)
            rewards.append((goal[nxt] & alive).float())
            alive = alive & ~terminal[nxt]
            state = torch.where(alive, nxt, state)
            if not alive.any():
                break
        device = policy.embedding_table().device
        return StepBatch(*(torch.stack(x, dim=-1).to(device) for x in (ids, actions, masks, rewards)))

    # -- exact solvers ------------------------------------------------------------------------------------
    def value_iteration(
        self, gamma: float = 0.95, tol: float = 1e-12, max_iter: int = 100_000
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Optimal ``V`` (S), ``Q`` (S x A) and policy matrix (S x A, ties split evenly) for discount ``gamma``.

        Terminal states have value 0 and a uniform policy row.
        """
        check_gamma(gamma)
        alive = ~self.terminal
        V = np.zeros(self.n_states)
        for _ in range(max_iter):
            Q = self.R + gamma * self.P @ (V * alive)
            V_new = Q.max(axis=1) * alive
            if np.max(np.abs(V_new - V)) < tol:
                V = V_new
                break
            V = V_new
        Q = (self.R + gamma * self.P @ (V * alive)) * alive[:, None]
        best = np.isclose(Q, Q.max(axis=1, keepdims=True), rtol=0.0, atol=1e-9)
        policy = best / best.sum(axis=1, keepdims=True)
        return V, Q, policy

    def evaluate(self, policy: np.ndarray, gamma: float = 0.95) -> np.ndarray:
        """Exact discounted value of a stochastic policy matrix (S x A), solving the Bellman linear system."""
        check_gamma(gamma)
        policy = self._check_policy(policy)
        P_pi, r_pi = self._policy_chain(policy)
        return np.linalg.solve(np.eye(self.n_states) - gamma * P_pi, r_pi)

    def success_probability(self, policy: np.ndarray, state: int | None = None) -> float | np.ndarray:
        """Exact probability of ever reaching a goal from the start (or from ``state``, or from every state
        when ``state="all"``) following ``policy``; undiscounted. Looping forever counts as failure.
        """
        policy = self._check_policy(policy)
        P_pi, _ = self._policy_chain(policy)
        goal = self.goal_mask
        # Restrict to states from which a goal is reachable under the policy: elsewhere the probability is 0,
        # and on that set (I - P_pi) is non-singular.
        can_reach = goal.copy()
        while True:
            grown = can_reach | (P_pi[:, can_reach].sum(axis=1) > 0)
            if (grown == can_reach).all():
                break
            can_reach = grown
        transient = can_reach & ~self.terminal
        probs = goal.astype(float)
        idx = np.flatnonzero(transient)
        if idx.size:
            A = np.eye(idx.size) - P_pi[np.ix_(idx, idx)]
            b = P_pi[np.ix_(idx, np.flatnonzero(goal))].sum(axis=1)
            probs[idx] = np.linalg.solve(A, b)
        if state == "all":
            return probs
        return float(probs[self.start if state is None else state])

    def occupancy(self, policy: np.ndarray, gamma: float = 0.95) -> np.ndarray:
        """Expected discounted number of visits of each state, starting at the start state.

        A terminal state counts once when entered (the episode stops there).
        """
        check_gamma(gamma)
        policy = self._check_policy(policy)
        P_pi, _ = self._policy_chain(policy)
        P_pi = P_pi * ~self.terminal[:, None]  # nothing flows out of a terminal state
        d0 = np.zeros(self.n_states)
        d0[self.start] = 1.0
        return np.linalg.solve(np.eye(self.n_states) - gamma * P_pi.T, d0)

    def state_distributions(self, policy: np.ndarray, steps: int) -> np.ndarray:
        """``steps + 1`` x S: the exact distribution of the state at time 0..steps (terminal states absorb)."""
        policy = self._check_policy(policy)
        P_pi, _ = self._policy_chain(policy)
        dists = np.zeros((steps + 1, self.n_states))
        dists[0, self.start] = 1.0
        for t in range(steps):
            dists[t + 1] = dists[t] @ P_pi
        return dists

    def _policy_chain(self, policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State-to-state matrix and expected one-step reward of a policy."""
        return np.einsum("sa,sat->st", policy, self.P), (policy * self.R).sum(axis=1)

    def _check_policy(self, policy: np.ndarray) -> np.ndarray:
        policy = np.asarray(policy, dtype=float)
        if policy.shape != (self.n_states, self.n_actions):
            raise ValueError(
                f"policy matrix has shape {policy.shape}, expected (n_states, n_actions) = "
                f"({self.n_states}, {self.n_actions})"
            )
        if (policy < -1e-9).any() or not np.allclose(policy.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError("policy matrix rows must be probability distributions (non-negative, summing to 1)")
        return policy

    # -- demonstrations -----------------------------------------------------------------------------------
    def rollout(
        self, policy: np.ndarray, rng: np.random.Generator | int | None = None, max_steps: int | None = None
    ) -> Trajectory:
        """Sample one episode from ``policy`` (greedy when it is deterministic and the map is not slippery)."""
        policy = self._check_policy(policy)
        rng = np.random.default_rng(rng)
        max_steps = 4 * self.n_states if max_steps is None else max_steps
        states, actions, rewards = [self.start], [], []
        while not self.terminal[states[-1]] and len(actions) < max_steps:
            s = states[-1]
            a = int(rng.choice(self.n_actions, p=policy[s]))
            nxt = int(rng.choice(self.n_states, p=self.P[s, a]))
            states.append(nxt)
            actions.append(a)
            rewards.append(self.reward(s, a, nxt))
        return Trajectory(tuple(states), tuple(actions), tuple(rewards), bool(self.terminal[states[-1]]))

    def optimal_policy(self, gamma: float = 0.95) -> np.ndarray:
        """The optimal policy matrix with ties broken deterministically (first best action), for demonstrations."""
        policy = self.value_iteration(gamma)[2]
        return np.eye(self.n_actions)[np.argmax(policy, axis=1)]

    def optimal_demonstration(self, gamma: float = 0.95, rng: np.random.Generator | int | None = 0) -> Trajectory:
        """The optimal trajectory: the greedy optimal rollout (sampled transitions on slippery maps)."""
        return self.rollout(self.optimal_policy(gamma), rng)

    def route_policy(self, route: list[tuple[int, int]], gamma: float = 0.95) -> np.ndarray:
        """A deterministic policy that follows ``route`` (cells from S to G) and acts optimally elsewhere."""
        policy = self.optimal_policy(gamma)
        for (r0, c0), (r1, c1) in itertools.pairwise(route):
            policy[r0 * self.ncol + c0] = np.eye(self.n_actions)[MOVES.index((r1 - r0, c1 - c0))]
        return policy

    def optimal_route(self) -> list[tuple[int, int]]:
        """Cells of a shortest hole-free path from S to G."""
        return shortest_route(self.desc)

    def suboptimal_route(self) -> list[tuple[int, int]] | None:
        """The shortest hole-free route from S to G that shares no cell with the optimal route but S and G.

        On the paper map this is the long way round; ``None`` when the map has no such alternative.
        """
        best = self.optimal_route()
        return shortest_route(self.desc, blocked=frozenset(best[1:-1]))

    def suboptimal_demonstration(
        self, gamma: float = 0.95, rng: np.random.Generator | int | None = 0
    ) -> Trajectory | None:
        """A rollout of the sub-optimal route's policy, or ``None`` when the map has no second route."""
        route = self.suboptimal_route()
        return None if route is None else self.rollout(self.route_policy(route, gamma), rng)

    # -- drawing ------------------------------------------------------------------------------------------
    def render_text(self, position: int | None = None) -> str:
        """The map as text, the current position (if any) marked with ``*``."""
        cells = [list(row) for row in self.desc]
        if position is not None:
            row, col = divmod(position, self.ncol)
            cells[row][col] = "*"
        return "\n".join("".join(row) for row in cells)
