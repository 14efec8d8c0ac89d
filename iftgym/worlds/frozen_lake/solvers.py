"""The exact solvers of a Frozen Lake model: policy evaluation, success probability, occupancy, value iteration,
state distributions and first-arrival times.

They read the model's sparse successors (:attr:`FrozenLakeMDP.next_cells`, :attr:`~FrozenLakeMDP.next_probs`), its
rewards and terminal cells, and nothing else. A policy's state-to-state chain is a sparse matrix with at most 12
entries a row (:meth:`ExactSolver.chain`; a dense array up to ``DENSE_STATES`` cells), so policy evaluation, success
probability and occupancy are sparse linear solves — SuperLU with the cells eliminated in nested-dissection order —
and value iteration is policy iteration on exact evaluations: milliseconds on 64 x 64 maps, seconds on 256 x 256.

Each model has one :class:`ExactSolver` (``FrozenLakeMDP.solver``), which keeps what is worth keeping between calls
(the elimination order, the sparse transitions, each value-iteration solution); the model's own ``evaluate``,
``success_probability``, ``occupancy``, ``value_iteration``... hand their work to it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as sparse_linalg
import torch

from iftgym.parallel import thread_map
from iftgym.validate import at_least, between
from iftgym.world import Actor
from iftgym.worlds.frozen_lake.maps import breadth_first

if TYPE_CHECKING:
    from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

SWEEPS = 20  # Bellman sweeps between two exact evaluations of policy iteration
DENSE_STATES = 256  # up to this many cells, dense numpy linear algebra beats sparse (measured: 2.0 vs 1.8 ms)


def check_gamma(gamma: float) -> None:
    """A discount in [0, 1) (the solvers need gamma < 1)."""
    between("gamma", gamma, 0, 1, include_high=False)


class ExactSolver:
    """The exact solvers of one :class:`~iftgym.worlds.frozen_lake.model.FrozenLakeMDP`.

    Every solver takes one policy matrix ``(S, A)`` or ``K`` of them ``(K, S, A)`` (one result per matrix, stacked;
    on maps above ``DENSE_STATES`` cells in ``threads`` threads, as SuperLU releases the GIL). A ``gamma`` of
    ``None`` is the model's.
    """

    def __init__(self, model: FrozenLakeMDP) -> None:
        self.model = model
        self._solutions: dict[tuple[float, float, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # -- policies -----------------------------------------------------------------------------------------
    def matrices(self, policy: Actor | np.ndarray) -> np.ndarray:
        """Policy matrices ``(K, S, A)`` as float64 numpy, from an :class:`Actor` or an array ``(S, A)`` or
        ``(K, S, A)``; each row checked to be a probability distribution."""
        m = self.model
        if not isinstance(policy, np.ndarray):
            policy = policy.action_probs(torch.float64).cpu().numpy()
        matrices = np.asarray(policy, dtype=float)
        if matrices.ndim not in (2, 3) or matrices.shape[-2:] != (m.n_states, m.n_actions):
            raise ValueError(f"policy matrix has shape {matrices.shape}, expected (n_states, n_actions) = "
                             f"({m.n_states}, {m.n_actions}), or K of them")  # fmt: skip
        if (matrices < -1e-9).any() or (np.abs(matrices.sum(axis=-1) - 1.0) > 1e-6).any() or np.isnan(matrices).any():
            raise ValueError("policy matrix rows must be probability distributions (non-negative, summing to 1)")
        return matrices[None] if matrices.ndim == 2 else matrices

    def _per_policy(
        self,
        policy: np.ndarray,
        dense: Callable[[np.ndarray], np.ndarray],
        sparse_solve: Callable[[np.ndarray], np.ndarray | float],
        threads: int | None = None,
    ) -> np.ndarray | float:
        """For a policy matrix ``(S, A)`` its result, or for ``(K, S, A)`` theirs stacked: up to ``DENSE_STATES``
        cells ``dense(matrices)`` solves all K at once (batched numpy), above it ``sparse_solve(matrix)`` one matrix
        at a time, in ``threads`` threads, as SuperLU releases the GIL while it factorises."""
        matrices = self.matrices(policy)
        if self.model.n_states <= DENSE_STATES:
            results = dense(matrices)
        else:
            results = np.stack(thread_map(sparse_solve, matrices, threads))
        return results[0] if np.ndim(policy) == 2 else results

    def _chains(self, matrices: np.ndarray) -> np.ndarray:
        """``(K, S, S)``: the dense chains of policy matrices ``(K, S, A)``."""
        return np.einsum("ksa,sat->kst", matrices, self.model.P)

    def _gamma(self, gamma: float | None) -> float:
        gamma = self.model.gamma if gamma is None else gamma
        check_gamma(gamma)
        return gamma

    # -- chains and linear systems ------------------------------------------------------------------------
    def chain(self, policy: np.ndarray) -> np.ndarray | sparse.csr_matrix:
        """The state-to-state matrix ``P_pi[s, s'] = sum_a policy[s, a] P[s, a, s']`` of a policy matrix: dense up
        to ``DENSE_STATES`` cells (where numpy's dense solvers beat sparse ones' overhead), else sparse (at most 12
        entries a row)."""
        return self._chain(self.matrices(policy)[0])

    def _chain(self, policy: np.ndarray) -> np.ndarray | sparse.csr_matrix:
        m = self.model
        n = m.n_states
        if n <= DENSE_STATES:
            return np.einsum("sa,sat->st", policy, m.P)
        weights = (policy[:, :, None] * m.next_probs).ravel()
        rows = np.repeat(np.arange(n), m.next_cells[0].size)
        chain = sparse.csr_matrix((weights, (rows, m.next_cells.ravel())), shape=(n, n))
        chain.eliminate_zeros()  # a move the policy never takes is no edge of the chain
        return chain

    def _solve(
        self,
        chain: sparse.csr_matrix,
        gamma: float,
        rhs: np.ndarray,
        states: np.ndarray | None = None,
        transposed: bool = False,
    ) -> np.ndarray:
        """``x`` with ``(I - gamma chain) x = rhs`` (the transposed system when ``transposed``), for a sparse chain over
        all cells or over the cells ``states``: sparse LU factors with the cells eliminated in nested-dissection
        order."""
        order = self._elimination_order
        if states is not None:
            rank = np.empty(self.model.n_states, np.int64)
            rank[order] = np.arange(order.size)
            order = np.argsort(rank[states])
        system = sparse.identity(chain.shape[0], format="csr") - gamma * chain
        return _Factors(system, order).solve(rhs, transposed)

    @functools.cached_property
    def _elimination_order(self) -> np.ndarray:
        """Nested dissection of the grid: split the longer side by a middle row or column, order both halves
        recursively and the separator last. Moves only join neighbouring cells, so this keeps the LU fill of a
        chain near its minimum (about n log n for n cells) — half the time of SuperLU's own orderings at 256 x 256."""
        ncol = self.model.ncol
        order: list[int] = []
        pending = [(0, self.model.nrow, 0, ncol, False)]
        while pending:  # (rows, cols, emit): a block to split, or a separator to emit once its halves are done
            r0, r1, c0, c1, emit = pending.pop()
            if emit or (r1 - r0) * (c1 - c0) <= 16:
                order.extend(r * ncol + c for r in range(r0, r1) for c in range(c0, c1))
            elif r1 - r0 >= c1 - c0:
                mid = (r0 + r1) // 2
                pending += [(mid, mid + 1, c0, c1, True), (mid + 1, r1, c0, c1, False), (r0, mid, c0, c1, False)]
            else:
                mid = (c0 + c1) // 2
                pending += [(r0, r1, mid, mid + 1, True), (r0, r1, mid + 1, c1, False), (r0, r1, c0, mid, False)]
        return np.array(order, dtype=np.int64)

    # -- the solvers --------------------------------------------------------------------------------------
    def evaluate(self, policy: np.ndarray, gamma: float | None = None) -> np.ndarray:
        """Exact discounted value of a stochastic policy matrix (S x A), or of each of K (K x S x A): the linear
        system ``(I - gamma P_pi) V = r_pi``."""
        gamma = self._gamma(gamma)
        R = self.model.R
        eye = np.eye(self.model.n_states)
        return self._per_policy(
            policy,
            lambda ms: np.linalg.solve(eye - gamma * self._chains(ms), (ms * R).sum(axis=2)[..., None])[..., 0],
            lambda m: self._solve(self._chain(m), gamma, (m * R).sum(axis=1)),
        )

    def success_probability(
        self, policy: np.ndarray, state: int | str | None = None, threads: int | None = None
    ) -> float | np.ndarray:
        """Exact probability of ever reaching a goal from the start (or from ``state``, or from every state
        when ``state="all"``) following ``policy``; undiscounted. Looping forever counts as failure.

        ``policy`` is one matrix (S x A) or K of them (K x S x A: one probability per matrix, in ``threads``
        threads on large maps).
        """
        if state is not None and state != "all":
            at_least("state", state, 0, high=self.model.n_states - 1)
        return self._per_policy(
            policy, lambda ms: self._dense_success(ms, state), lambda m: self._success(m, state), threads
        )

    def _dense_success(self, matrices: np.ndarray, state: int | str | None) -> np.ndarray:
        """:meth:`_success` for K policies of a dense map at once: the same graph analysis, and one system per policy
        in which a state of known probability (0 or 1) is an identity row, which leaves each system's block over the
        other states exactly the one :meth:`_success` solves."""
        m = self.model
        chains = self._chains(matrices)
        never = ~_dense_reaching(chains, m.goal_mask)
        surely = ~_dense_reaching(chains, never)
        rest = ~never & ~surely
        system = np.eye(m.n_states) - chains * (rest[:, :, None] & rest[:, None, :])
        rhs = np.where(rest, (chains * surely[:, None, :]).sum(axis=2), surely)
        probs = np.linalg.solve(system, rhs[..., None])[..., 0]
        return probs if state == "all" else probs[:, m.start if state is None else state]

    def _success(self, policy: np.ndarray, state: int | str | None) -> float | np.ndarray:
        m = self.model
        if m.deterministic and state != "all" and (policy.max(axis=1) == 1).all():
            return self._walk_succeeds(policy.argmax(axis=1), m.start if state is None else state)
        P_pi = self._chain(policy)
        # Graph analysis first, as probabilistic model checkers do: 0 where no goal can be reached, 1 where no
        # such state can be reached; the linear system only for the rest. It is non-singular there, and
        # well-conditioned where a solve over every state would not be (a near-certain loop that ends in G).
        never = ~_reaching(P_pi, m.goal_mask)
        surely = ~_reaching(P_pi, never) if never.any() else np.ones(m.n_states, dtype=bool)
        probs = surely.astype(float)
        idx = np.flatnonzero(~never & ~surely)
        if idx.size:
            into_surely = np.asarray(P_pi[idx][:, np.flatnonzero(surely)].sum(axis=1)).ravel()
            probs[idx] = self._solve(P_pi[idx][:, idx], 1.0, into_surely, idx)
        if state == "all":
            return probs
        return float(probs[m.start if state is None else state])

    def _walk_succeeds(self, actions: np.ndarray, state: int) -> float:
        """Whether a deterministic policy (an action per state) walks from ``state`` into a goal on a
        deterministic map: it either enters a terminal cell or comes back to a cell it has seen (a loop)."""
        m = self.model
        seen = set()
        while not m.terminal[state] and state not in seen:
            seen.add(state)
            state = int(m.next_cells[state, actions[state], 0])
        return float(m.goal_mask[state])

    def occupancy(self, policy: np.ndarray, gamma: float | None = None, threads: int | None = None) -> np.ndarray:
        """Expected discounted number of visits of each state, starting at the start state, for a policy matrix
        (S x A) or each of K (K x S x A, in ``threads`` threads on large maps).

        A terminal state counts once when entered (the episode stops there).
        """
        gamma = self._gamma(gamma)
        return self._per_policy(
            policy, lambda ms: self._dense_occupancy(ms, gamma), lambda m: self._occupancy(m, gamma), threads
        )

    def _occupancy(self, policy: np.ndarray, gamma: float) -> np.ndarray:
        # Solved on the live cells only (nothing flows out of a terminal one; a fifth of the cells of a random map
        # are holes): d_live = d0 + gamma P_live^T d_live, then each terminal cell gets what flows into it.
        m = self.model
        P_pi = self._chain(policy)
        live, ends = np.flatnonzero(~m.terminal), np.flatnonzero(m.terminal)
        visits = self._start_visits()
        visits[live] = self._solve(P_pi[live][:, live], gamma, visits[live], live, transposed=True)
        visits[ends] += gamma * (P_pi[live][:, ends].T @ visits[live])
        return visits

    def _dense_occupancy(self, matrices: np.ndarray, gamma: float) -> np.ndarray:
        """:meth:`_occupancy` for K policies of a dense map at once."""
        m = self.model
        chains = self._chains(matrices)
        live, ends = ~m.terminal, m.terminal
        visits = np.tile(self._start_visits(), (len(matrices), 1))
        system = np.eye(live.sum()) - gamma * chains[:, live][:, :, live].transpose(0, 2, 1)
        visits[:, live] = np.linalg.solve(system, visits[:, live, None])[..., 0]
        visits[:, ends] += gamma * np.einsum("kle,kl->ke", chains[:, live][:, :, ends], visits[:, live])
        return visits

    def _start_visits(self) -> np.ndarray:
        """``(S,)``: 1 at the start cell."""
        start = np.zeros(self.model.n_states)
        start[self.model.start] = 1.0
        return start

    def value_iteration(
        self, gamma: float | None = None, tol: float = 1e-12, max_iter: int = 100_000
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Optimal ``V`` (S), ``Q`` (S x A) and policy matrix (S x A, ties split evenly) for discount ``gamma``
        (default: the model's). Terminal states have value 0 and a uniform policy row.

        Solved by policy iteration with exact sparse evaluations, started from the policy that walks the fewest
        moves to a goal (optimal on deterministic maps, close to it on slippery ones). Between two evaluations,
        ``SWEEPS`` Bellman sweeps (cheap sparse products) carry each improvement further across the map. It stops
        when no state's action can be improved by more than ``tol`` on an exact evaluation (or after ``max_iter``
        evaluations).

        Solved once per setting: later calls return copies of the first solution.
        """
        gamma = self._gamma(gamma)
        key = (gamma, tol, max_iter)
        if key not in self._solutions:
            self._solutions[key] = self._policy_iteration(gamma, tol, max_iter)
        V, Q, policy = self._solutions[key]
        return V.copy(), Q.copy(), policy.copy()

    def _policy_iteration(self, gamma: float, tol: float, max_iter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_actions = self.model.n_actions
        alive = ~self.model.terminal
        greedy = self._towards_goal()
        for _ in range(max_iter):
            V = self.evaluate(np.eye(n_actions)[greedy], gamma) * alive
            Q = self._q_values(V, gamma)
            best = Q.max(axis=1)
            current = np.take_along_axis(Q, greedy[:, None], 1)[:, 0]
            if not (alive & (best > current + tol * max(1.0, float(np.abs(best).max())))).any():
                break
            for _ in range(SWEEPS):
                Q = self._q_values(Q.max(axis=1) * alive, gamma)
            greedy = np.where(alive, Q.argmax(axis=1), greedy)
        Q = self._q_values(V, gamma) * alive[:, None]
        best = np.isclose(Q, Q.max(axis=1, keepdims=True), rtol=0.0, atol=1e-9)
        policy = best / best.sum(axis=1, keepdims=True)
        return V, Q, policy

    def _q_values(self, V: np.ndarray, gamma: float) -> np.ndarray:
        """``Q = R + gamma * sum_s' P[s, a, s'] V[s']`` over live successors: one sparse product."""
        R = self.model.R
        return R + gamma * (self._transitions @ (V * ~self.model.terminal)).reshape(R.shape)

    @functools.cached_property
    def _transitions(self) -> sparse.csr_matrix:
        """``P`` as a sparse ``(S * A, S)`` matrix, row ``s * A + a`` the distribution after action a in s."""
        m = self.model
        n, A = m.n_states, m.n_actions
        rows = np.repeat(np.arange(n * A), m.next_cells.shape[-1])
        return sparse.csr_matrix((m.next_probs.ravel(), (rows, m.next_cells.ravel())), shape=(n * A, n))

    def _towards_goal(self) -> np.ndarray:
        """``(S,)`` the first action (LEFT, DOWN, RIGHT, UP) whose intended move leads to a cell fewer moves from a
        goal, by breadth-first search back from the goals; 0 where no goal can be reached."""
        m = self.model
        n = m.n_states
        intended = m.next_cells[np.arange(n)[:, None], np.arange(m.n_actions), 0]
        live = ~m.terminal
        moves = sparse.csr_matrix((np.ones(live.sum() * m.n_actions),
                                   (np.repeat(np.flatnonzero(live), m.n_actions), intended[live].ravel())),
                                  shape=(n, n))  # fmt: skip
        distance = csgraph.shortest_path(moves.T, unweighted=True, indices=np.flatnonzero(m.goal_mask)).min(0)
        step = distance[intended]  # (S, A): distance to a goal after each intended move
        towards = step < distance[:, None]
        return np.where(towards.any(1), towards.argmax(1), 0)

    def state_distributions(self, policy: np.ndarray, steps: int) -> np.ndarray:
        """``steps + 1`` x S: the exact distribution of the state at time 0..steps (terminal states absorb)."""
        m = self.model
        P_pi = self.chain(policy)
        dists = np.zeros((steps + 1, m.n_states))
        dists[0, m.start] = 1.0
        for t in range(steps):
            dists[t + 1] = dists[t] @ P_pi
        return dists

    def first_arrival_times(self) -> np.ndarray:
        """``(S,)``: the fewest moves from the start to each cell (NaN where no walk leads; holes and goals are
        entered but never left)."""
        m = self.model
        times = np.full(m.n_states, np.nan)
        for (row, col), distance in breadth_first(m.desc)[0].items():
            times[row * m.ncol + col] = distance
        return times


def _dense_reaching(chains: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(K, S)``: which states of each chain ``(K, S, S)`` have a path of positive probability into ``targets``
    (``(S,)`` or ``(K, S)``; the targets included)."""
    edges = (chains > 0).astype(float)
    seen = np.broadcast_to(targets, chains.shape[:2]).copy()
    while True:
        grown = seen | ((edges @ seen[..., None])[..., 0] > 0)
        if (grown == seen).all():
            return seen
        seen = grown


def _reaching(chain: sparse.csr_matrix, targets: np.ndarray) -> np.ndarray:
    """``(S,)`` which states of a sparse chain have a path of positive probability into ``targets`` (the targets
    included): one breadth-first search back from all targets at once, in C."""
    steps = csgraph.dijkstra(chain.T, indices=np.flatnonzero(targets), min_only=True, unweighted=True)
    return np.isfinite(steps)


class _Factors:
    """The LU factors of ``matrix = I - gamma P`` (P substochastic), its rows and columns taken in ``order``.

    SuperLU factors the transpose: it is column diagonally dominant, so partial pivoting keeps the diagonal and the
    fill stays that of ``order``.
    """

    def __init__(self, matrix: sparse.spmatrix, order: np.ndarray) -> None:
        self.order = order
        permuted = sparse.csr_matrix(matrix)[order][:, order]
        self.lu = sparse_linalg.splu(sparse.csc_matrix(permuted.T), permc_spec="NATURAL")

    def solve(self, rhs: np.ndarray, transposed: bool = False) -> np.ndarray:
        """``matrix^-1 rhs`` (``matrix.T^-1 rhs`` when ``transposed``)."""
        out = np.empty_like(rhs, dtype=float)
        out[self.order] = self.lu.solve(np.asarray(rhs, dtype=float)[self.order], trans="N" if transposed else "T")
        return out
