"""The exact Frozen Lake model: the one source of its dynamics, demonstrations and the World contract.

``FrozenLakeMDP.from_map`` builds exactly Gymnasium's ``FrozenLake-v1`` dynamics: states are ``row * ncol + col``,
actions 0 LEFT, 1 DOWN, 2 RIGHT, 3 UP; a slippery move goes the intended way with ``success_rate`` and to each
perpendicular side with half the rest; holes and goals are absorbing; reward 1 on entering a goal.

The dynamics are stored once, sparsely: each (state, action) has at most three successors (:attr:`next_cells`,
ascending, with :attr:`next_probs` and their running sums :attr:`next_cdf`). Every stepper of the toolkit moves
with :meth:`FrozenLakeMDP.step` (inverse-CDF sampling from one uniform): demonstrations, the batched on-policy
sampler, the Gymnasium environment and the text task's walks. The exact solvers (policy evaluation, success
probability, occupancy, value iteration: :mod:`iftgym.worlds.frozen_lake.solvers`) work on the same arrays; the
model's methods of the same names hand their work to its :attr:`FrozenLakeMDP.solver`. The dense ``P``
(S x A x S) exists only on demand, for small maps and tests.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from iftgym.types import PairBatch, PreferencePair, StepBatch, TrainingData, Trajectory
from iftgym.validate import at_least, between, fits_in_memory
from iftgym.world import Actor
from iftgym.worlds.frozen_lake.maps import MOVES, Map, MapLike, load_map, shortest_route
from iftgym.worlds.frozen_lake.solvers import ExactSolver, check_gamma

if TYPE_CHECKING:
    import scipy.sparse as sparse

ACTION_NAMES = ("LEFT", "DOWN", "RIGHT", "UP")
ACTION_ARROWS = ("←", "↓", "→", "↑")
SAMPLE_BLOCK = 16  # steps of uniforms a seed draws at once when sampling episodes
EXPLORED_THRESHOLD = 0.01  # a cell counts as explored from this many expected discounted visits
SCORES = ("mse", "success", "greedy_success", "explored")


def _dynamics(desc: Map, slippery: bool, success_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """``(S, 4, 3)`` successor cells (ascending; a duplicate merged into the first, unused slots repeating the last
    successor with probability 0) and their probabilities."""
    nrow, ncol = len(desc), len(desc[0])
    n = nrow * ncol
    rows, cols = np.divmod(np.arange(n), ncol)
    terminal = np.array([tile in "HG" for row in desc for tile in row])

    def moved(direction: int) -> np.ndarray:
        dr, dc = MOVES[direction]
        return np.clip(rows + dr, 0, nrow - 1) * ncol + np.clip(cols + dc, 0, ncol - 1)

    fail = (1.0 - success_rate) / 2.0
    cells, probs = np.empty((n, 4, 3), np.int64), np.zeros((n, 4, 3))
    for a in range(4):  # outcomes in Gymnasium's order: slip to (a - 1), intended a, slip to (a + 1)
        outcomes = [((a - 1) % 4, fail), (a, success_rate), ((a + 1) % 4, fail)] if slippery else [(a, 1.0)] * 3
        for j, (direction, prob) in enumerate(outcomes):
            cells[:, a, j] = moved(direction)
            probs[:, a, j] = prob if slippery or j == 0 else 0.0
    cells[terminal], probs[terminal] = np.arange(n)[terminal, None, None], [1.0, 0.0, 0.0]
    order = np.argsort(cells, axis=-1, kind="stable")
    cells, probs = np.take_along_axis(cells, order, -1), np.take_along_axis(probs, order, -1)
    flat_cells, flat_probs = cells.reshape(-1, 3), probs.reshape(-1, 3)  # views
    slots = np.arange(len(flat_cells))
    for j in (1, 2):  # sorted, so a repeated cell follows its first slot: add its probability there
        first = np.where(flat_cells[:, 0] == flat_cells[:, j], 0, j - 1)
        same = np.flatnonzero(flat_cells[slots, first] == flat_cells[:, j])
        flat_probs[same, first[same]] += flat_probs[same, j]
        flat_probs[same, j] = 0.0
    order = np.argsort(probs == 0, axis=-1, kind="stable")  # real successors first, in ascending order
    cells, probs = np.take_along_axis(cells, order, -1), np.take_along_axis(probs, order, -1)
    last = np.take_along_axis(cells, (probs > 0).sum(-1, keepdims=True) - 1, -1)
    return np.where(probs > 0, cells, last), probs


@dataclass(frozen=True, eq=False)
class FrozenLakeMDP:
    """Exact model of a Frozen Lake map; implements :class:`iftgym.world.World` (states are cell indices).

    ``gamma`` is the discount that defines optimality here: the solvers, demonstrations and scores use it unless
    told otherwise.
    """

    desc: Map
    slippery: bool
    success_rate: float
    gamma: float
    next_cells: np.ndarray = field(repr=False)
    next_probs: np.ndarray = field(repr=False)
    R: np.ndarray = field(repr=False)
    terminal: np.ndarray = field(repr=False)
    start: int
    n_actions: int = 4

    @classmethod
    def from_map(
        cls, map: MapLike = "paper", slippery: bool = False, success_rate: float = 1 / 3, gamma: float = 0.95
    ) -> FrozenLakeMDP:
        """Build the model of a catalogue name, map file or list of rows."""
        between("success_rate", success_rate, 0, 1, include_low=False)
        check_gamma(gamma)
        desc = load_map(map)
        tiles = np.array([list(row) for row in desc]).ravel()
        cells, probs = _dynamics(desc, slippery, success_rate)
        terminal = np.isin(tiles, ["H", "G"])
        R = (probs * (tiles == "G")[cells]).sum(-1) * ~terminal[:, None]  # the chance of entering a goal
        start = int(np.flatnonzero(tiles == "S")[0])
        return cls(desc, slippery, float(success_rate), float(gamma), cells, probs, R, terminal, start)

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

    @functools.cached_property
    def goal_mask(self) -> np.ndarray:
        return np.array([self.tile(s) == "G" for s in range(self.n_states)])

    @functools.cached_property
    def next_cdf(self) -> np.ndarray:
        """``(S, A, 3)`` running sums of :attr:`next_probs`."""
        return self.next_probs.cumsum(-1)

    @functools.cached_property
    def deterministic(self) -> bool:
        return bool((self.next_probs[..., 0] == 1).all())

    @functools.cached_property
    def P(self) -> np.ndarray:
        """The dense ``(S, A, S)`` transition array, built on demand (for small maps and tests: it is S^2 large)."""
        n = self.n_states
        fits_in_memory(f"the dense transition array of a {self.nrow}x{self.ncol} map", 32 * n * n,
                       "use the sparse successors (next_cells, next_probs) or chain()")  # fmt: skip
        P = np.zeros((n, self.n_actions, n))
        np.add.at(P, (np.arange(n)[:, None, None], np.arange(self.n_actions)[None, :, None], self.next_cells),
                  self.next_probs)  # fmt: skip
        return P

    # -- dynamics -----------------------------------------------------------------------------------------
    def step(self, state: int | np.ndarray, action: int | np.ndarray, u: float | np.ndarray) -> int | np.ndarray:
        """Where ``action`` leads from ``state`` given a uniform draw ``u`` in [0, 1): the first successor whose
        cumulative probability exceeds ``u`` (element-wise for arrays)."""
        pair = np.asarray(state) * self.n_actions + action  # row of the (S * A, 3) views: one gather, not two
        if self.deterministic:  # the first successor has probability 1: no draw exceeds its running sum
            nxt = self.next_cells.reshape(-1)[pair * 3]
        else:
            k = np.minimum((np.asarray(u)[..., None] > self.next_cdf.reshape(-1, 3)[pair]).sum(-1), 2)
            nxt = self.next_cells.reshape(-1)[pair * 3 + k]
        return int(nxt) if np.ndim(nxt) == 0 else nxt

    def step_one(self, state: int, action: int, u: float) -> int:
        """:meth:`step` for one ``int`` state and action and one ``float`` draw, the same successor without building
        arrays (over ten times faster on scalars; the Gymnasium env's per-step move). The running sums never
        decrease, so counting the first two below ``u`` is :meth:`step`'s count clamped at 2."""
        cdf = self.next_cdf
        return self.next_cells.item(state, action, (u > cdf.item(state, action, 0)) + (u > cdf.item(state, action, 1)))

    def start_distribution(self) -> dict[int, float]:
        return {self.start: 1.0}

    def transition(self, state: int, action: int) -> dict[int, float]:
        """The distribution of the next cell, ``{cell: probability}``."""
        cells, probs = self.next_cells[state, action], self.next_probs[state, action]
        return {int(c): float(p) for c, p in zip(cells, probs) if p > 0}

    def reward(self, state: int, action: int, next_state: int) -> float:
        return float(not self.terminal[state] and self.tile(next_state) == "G")

    def is_terminal(self, state: int) -> bool:
        return bool(self.terminal[state])

    def walk(self, actions: Sequence[int]) -> Trajectory:
        """The episode of a fixed action sequence on a deterministic map, stopping at a hole or goal."""
        if not self.deterministic:
            raise ValueError("walk() follows a fixed action sequence, which needs a deterministic (not slippery) map")
        states: list[int] = [self.start]
        for action in actions:
            if self.terminal[states[-1]]:
                break
            states.append(self.step(states[-1], action, 0.0))
        taken = tuple(int(a) for a in actions[: len(states) - 1])
        rewards = tuple(self.reward(s, a, n) for s, a, n in zip(states, taken, states[1:]))
        return Trajectory(tuple(states), taken, rewards, bool(self.terminal[states[-1]]))

    # -- the World contract -------------------------------------------------------------------------------
    def input_id(self, state: int) -> int:
        return int(state)

    def action_name(self, action: int) -> str:
        return ACTION_NAMES[int(action)]

    def successor_probs(self, ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Rows of P built from the sparse successors: ``(..., n_states)`` float32 on the ids' device."""
        cache = self.__dict__.setdefault("_successor_tensors", {})
        if str(ids.device) not in cache:
            cache[str(ids.device)] = (
                torch.as_tensor(self.next_cells, device=ids.device),
                torch.as_tensor(self.next_probs, dtype=torch.float32, device=ids.device),
            )
        cells, probs = cache[str(ids.device)]
        rows = torch.zeros(*ids.shape, self.n_states, device=ids.device)
        return rows.scatter_add_(-1, cells[ids, actions], probs[ids, actions])

    def sample(
        self,
        policy: Actor,
        n_episodes: int,
        generators: Sequence[torch.Generator],
        max_steps: int | None = None,
    ) -> StepBatch:
        """Roll out ``n_episodes`` per seed, all seeds at once: a ``(K, n, T)`` batch.

        Episodes stop at a hole or goal, or after ``max_steps`` (default: 4 x number of cells). Each step takes two
        uniforms per episode (action, then move); seed k draws them from ``generators[k]`` in blocks of
        ``SAMPLE_BLOCK`` steps, and only while one of its episodes is running, so its episodes are the same
        whatever other seeds run beside it. A Markov policy is read once as its policy matrix; a policy with memory
        (``markov=False``) is run on each episode's history of cells at every step.
        """
        n_seeds = policy.n_seeds
        if len(generators) != n_seeds:
            raise ValueError(f"got {len(generators)} generators for a policy of {n_seeds} seeds")
        at_least("n_episodes", n_episodes, 1)
        action_cdf = policy.action_probs().cpu().cumsum(-1).numpy() if policy.markov else None  # (K, S, A)
        memory = None
        max_steps = 4 * self.n_states if max_steps is None else max_steps
        shape = (n_seeds, n_episodes)
        state = np.full(shape, self.start)
        alive = np.ones(shape, dtype=bool)
        at_least("max_steps", max_steps, 1)
        # every episode is stepped, a finished one in place, and its steps are masked out: whole-array operations
        # cost less than picking out the running episodes at every step
        blocks: list[tuple[np.ndarray, ...]] = []  # per block of steps: (ids, actions, mask, rewards), (K, n, block)
        seeds = np.arange(n_seeds)[:, None]
        for t in range(max_steps):
            if t % SAMPLE_BLOCK == 0:
                blocks.append(tuple(np.zeros((*shape, SAMPLE_BLOCK), dtype)
                                    for dtype in (np.int64, np.int64, bool, np.float32)))  # fmt: skip
                running = alive.any(-1).tolist()
                block = torch.zeros(SAMPLE_BLOCK, 2, n_seeds, n_episodes)
                for k, generator in enumerate(generators):
                    if running[k]:
                        block[:, :, k] = torch.rand(SAMPLE_BLOCK, 2, n_episodes, generator=generator)
                block_np = block.numpy()
            u = block_np[t % SAMPLE_BLOCK]
            if action_cdf is not None:
                cdf = action_cdf[seeds, state]
            else:  # one more step of the policy's memory, for every episode (finished ones idle in place)
                with torch.no_grad():
                    inputs = policy.embed(torch.from_numpy(state[:, :, None]).to(policy.device))[:, :, 0]
                    logits, memory = policy.step(inputs, memory)
                cdf = torch.softmax(logits.float(), -1).cumsum(-1).cpu().numpy()
            # Inverse-CDF sampling; the last CDF entry is not compared, so round-off there cannot pick a 5th action.
            action = (u[0, ..., None] > cdf[..., :-1]).sum(-1)
            nxt = self.step(state, action, u[1])
            for array, value in zip(blocks[-1], (state, action * alive, alive, self.goal_mask[nxt] & alive)):
                array[..., t % SAMPLE_BLOCK] = value
            ends = self.terminal[nxt]
            state = np.where(alive & ~ends, nxt, state)
            alive &= ~ends
            if not alive.any():
                break
        steps = (np.ascontiguousarray(np.concatenate(parts, axis=-1)[..., : t + 1]) for parts in zip(*blocks))
        return StepBatch(*(torch.from_numpy(array).to(policy.device) for array in steps))

    def sample_like(
        self, policy: Actor, demos: StepBatch, n_per: int, generators: Sequence[torch.Generator]
    ) -> StepBatch:
        """``n_per`` on-policy episodes per seed for each trajectory of ``demos``, from where it starts — every
        episode starts at S, so this is :meth:`sample` of ``size * n_per`` episodes, ``b * n_per ...`` for
        trajectory b."""
        at_least("n_per", n_per, 1)
        return self.sample(policy, demos.size * n_per, generators)

    def training_data(self, n_demos: int = 1) -> TrainingData:
        """``n_demos`` optimal demonstrations, and as many (optimal, second-route) pairs when the map has a second
        route (:meth:`second_route`). On slippery maps each is a sampled rollout (demonstration i from seed i,
        rejected trajectory i from seed 10000 + i)."""
        at_least("n_demos", n_demos, 1)
        demos = [self.optimal_demonstration(rng=i) for i in range(n_demos)]
        route = self.second_route()
        pairs = None
        if route is not None:
            policy = self.route_policy(route)
            rejected = [self.rollout(policy, rng=10_000 + i) for i in range(n_demos)]
            pairs = PairBatch.from_pairs(self, [PreferencePair(c, r) for c, r in zip(demos, rejected)])
        return TrainingData(StepBatch.from_trajectories(self, demos), pairs)

    def reach_probs(self, policy: Actor | np.ndarray, batch: StepBatch) -> torch.Tensor:
        """``(K, B, T)``: the probability that the policy's rollout is in cell ``ids[t]`` at time t, from the exact
        forward state distribution (a Markov policy, or policy matrices ``(K, S, A)``)."""
        matrices = self._matrices(policy)
        n_seeds, steps = matrices.shape[0], batch.ids.shape[-1]
        dists = np.stack([self.state_distributions(m, steps - 1) for m in matrices])  # (K, T, S)
        ids = batch.ids.expand(n_seeds, *batch.ids.shape[-2:]).cpu().numpy()  # (K, B, T)
        at = dists[np.arange(n_seeds)[:, None, None], np.arange(steps)[None, None, :], ids]
        return torch.from_numpy(at).to(batch.ids.device)

    def scores(
        self, policy: Actor | np.ndarray, metrics: Sequence[str] = SCORES, threads: int | None = None
    ) -> dict[str, np.ndarray]:
        """Exact measures of a Markov policy (or policy matrices ``(K, S, A)``), one ``(K,)`` array each:

        * ``mse``: mean squared error between the policy's state x action matrix and the optimal one over
          non-terminal states (the paper's metric);
        * ``success`` / ``greedy_success``: probability of reaching G from S, following the stochastic policy or
          its greedy (argmax) version;
        * ``explored``: cells with a discounted occupancy of at least ``EXPLORED_THRESHOLD`` (holes, G included).

        On maps above ``solvers.DENSE_STATES`` cells the seeds are solved in ``threads`` threads (default: one per
        core).
        """
        unknown = sorted(set(metrics) - set(SCORES))
        if unknown:
            raise ValueError(f"unknown score {', '.join(unknown)}: expected any of {', '.join(SCORES)}")
        matrices = self._matrices(policy)
        alive = ~self.terminal

        def greedy(matrices: np.ndarray) -> np.ndarray:
            return np.eye(self.n_actions)[matrices.argmax(-1)]

        compute = {
            # each matrix's mean along one axis: the same sum order however many matrices are scored together
            "mse": lambda: ((matrices - self.optimal_matrix) ** 2)[:, alive].reshape(len(matrices), -1).mean(axis=1),
            "success": lambda: self.success_probability(matrices, threads=threads),
            "greedy_success": lambda: self.success_probability(greedy(matrices), threads=threads),
            "explored": lambda: (self.occupancy(matrices, threads=threads) >= EXPLORED_THRESHOLD).sum(-1) * 1.0,
        }
        return {name: compute[name]() for name in metrics}

    def _matrices(self, policy: Actor | np.ndarray) -> np.ndarray:
        """Policy matrices ``(K, S, A)``, checked (:meth:`ExactSolver.matrices`)."""
        return self.solver.matrices(policy)

    def _check_policy(self, policy: np.ndarray) -> np.ndarray:
        """One policy matrix ``(S, A)``, checked."""
        if np.ndim(policy) != 2:
            raise ValueError(f"policy matrix has shape {np.shape(policy)}, expected (n_states, n_actions) = "
                             f"({self.n_states}, {self.n_actions})")  # fmt: skip
        return self._matrices(policy)[0]

    # -- exact solvers (worlds/frozen_lake/solvers.py) ----------------------------------------------------
    @functools.cached_property
    def solver(self) -> ExactSolver:
        """This map's exact solvers; the methods below hand their work to it."""
        return ExactSolver(self)

    @functools.cached_property
    def optimal_matrix(self) -> np.ndarray:
        """The optimal policy matrix at the model's ``gamma``, ties split evenly (what ``mse`` is measured to)."""
        return self.value_iteration()[2]

    def chain(self, policy: np.ndarray) -> np.ndarray | sparse.csr_matrix:
        """The state-to-state matrix ``P_pi`` of a policy matrix, dense or sparse (:meth:`ExactSolver.chain`)."""
        return self.solver.chain(policy)

    def evaluate(self, policy: np.ndarray, gamma: float | None = None) -> np.ndarray:
        """Exact discounted value of a policy matrix (S x A), or of each of K (:meth:`ExactSolver.evaluate`)."""
        return self.solver.evaluate(policy, gamma)

    def success_probability(
        self, policy: np.ndarray, state: int | str | None = None, threads: int | None = None
    ) -> float | np.ndarray:
        """Exact probability of ever reaching a goal from the start, ``state`` or every state (``"all"``) following
        ``policy``, undiscounted (:meth:`ExactSolver.success_probability`)."""
        return self.solver.success_probability(policy, state, threads)

    def occupancy(self, policy: np.ndarray, gamma: float | None = None, threads: int | None = None) -> np.ndarray:
        """Expected discounted visits of each state from the start (:meth:`ExactSolver.occupancy`)."""
        return self.solver.occupancy(policy, gamma, threads)

    def value_iteration(
        self, gamma: float | None = None, tol: float = 1e-12, max_iter: int = 100_000
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Optimal ``V`` (S), ``Q`` (S x A) and policy matrix (S x A, ties split evenly), solved once per setting
        and handed out as copies (:meth:`ExactSolver.value_iteration`)."""
        return self.solver.value_iteration(gamma, tol, max_iter)

    def state_distributions(self, policy: np.ndarray, steps: int) -> np.ndarray:
        """``steps + 1`` x S: the exact distribution of the state at time 0..steps (terminal states absorb)."""
        return self.solver.state_distributions(policy, steps)

    def first_arrival_times(self) -> np.ndarray:
        """``(S,)``: the fewest moves from the start to each cell (NaN where no walk leads)."""
        return self.solver.first_arrival_times()

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
            nxt = self.step(s, a, rng.random())
            states.append(nxt)
            actions.append(a)
            rewards.append(self.reward(s, a, nxt))
        return Trajectory(tuple(states), tuple(actions), tuple(rewards), bool(self.terminal[states[-1]]))

    def optimal_policy(self, gamma: float | None = None) -> np.ndarray:
        """The optimal policy matrix with ties broken deterministically (first best action), for demonstrations."""
        policy = self.value_iteration(gamma)[2]
        return np.eye(self.n_actions)[np.argmax(policy, axis=1)]

    def optimal_demonstration(
        self, gamma: float | None = None, rng: np.random.Generator | int | None = 0
    ) -> Trajectory:
        """The optimal trajectory: the greedy optimal rollout (sampled transitions on slippery maps)."""
        return self.rollout(self.optimal_policy(gamma), rng)

    def route_policy(self, route: list[tuple[int, int]], gamma: float | None = None) -> np.ndarray:
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

    def second_route(self) -> list[tuple[int, int]] | None:
        """The route preference pairs reject: :meth:`suboptimal_route` when the map has one, otherwise the
        shortest route whose first move differs from the optimal first move; ``None`` when neither exists."""
        route = self.suboptimal_route()
        best = self.optimal_route()
        if route is None and len(best) > 2:
            route = shortest_route(self.desc, blocked=frozenset(best[1:2]))
        return route

    def suboptimal_demonstration(
        self, gamma: float | None = None, rng: np.random.Generator | int | None = 0
    ) -> Trajectory | None:
        """A rollout of the :meth:`suboptimal_route`'s policy, or ``None`` when the map has no such route."""
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
