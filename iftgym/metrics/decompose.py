"""Where a policy's distance to the optimum comes from: the demonstrated cells against the rest, weighted by where
the optimal and the learned policy actually go, and a tie-robust measure of optimality.

The paper's metric, ``mse``, is the mean over non-terminal cells of each cell's squared error to the optimal policy
(ties split evenly). On the paper map every rule trained from one demonstration is exact on the 6 demonstrated
cells, so all of its differences come from cells no rule was trained on; and where the optimum ties, a policy that
copies the demonstration's choice is charged for it. These measures make both visible.
"""

from __future__ import annotations

import numpy as np

from iftgym.types import StepBatch
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

DECOMPOSED = (
    "mse_demo",  # mse on the non-terminal cells the demonstrations visit
    "mse_rest",  # mse on the other non-terminal cells
    "mse_optimal_visits",  # each cell's squared error weighted by the optimal policy's discounted visits
    "mse_own_visits",  # ... by the learned policy's own discounted visits
    "optimal_mass",  # mean over non-terminal cells of the probability on the optimal actions (ties: any of them)
    "optimal_mass_own_visits",  # the same, weighted by the learned policy's own visits
)


def demonstrated_cells(model: FrozenLakeMDP, demos: StepBatch) -> np.ndarray:
    """``(S,)`` which cells the demonstrations act in (a target action is given there)."""
    cells = np.zeros(model.n_states, dtype=bool)
    cells[demos.ids[demos.mask].cpu().numpy()] = True
    return cells


def cell_errors(model: FrozenLakeMDP, policies: np.ndarray) -> np.ndarray:
    """``(K, S)`` each cell's squared error to the optimal policy, averaged over actions (0 on terminal cells):
    ``mse`` is its mean over the non-terminal cells."""
    errors = ((np.asarray(policies, dtype=float) - model.optimal_matrix) ** 2).mean(-1)
    return errors * ~model.terminal


def _visit_weights(occupancy: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Discounted visits of the non-terminal cells, normalised to sum to 1 (a state distribution)."""
    visits = occupancy * alive
    return visits / visits.sum(-1, keepdims=True)


def decomposed_scores(model: FrozenLakeMDP, policies: np.ndarray, demos: StepBatch) -> dict[str, np.ndarray]:
    """The :data:`DECOMPOSED` measures of policy matrices ``(K, S, A)``, one ``(K,)`` array each (NaN where a set of
    cells is empty, as ``mse_rest`` when the demonstrations cover every cell)."""
    policies = np.asarray(policies, dtype=float)
    alive = ~model.terminal
    demo = demonstrated_cells(model, demos) & alive
    errors = cell_errors(model, policies)
    optimal_actions = model.optimal_matrix > 0
    mass = (policies * optimal_actions).sum(-1)
    on_optimal = _visit_weights(model.occupancy(model.optimal_matrix), alive)
    on_own = _visit_weights(model.occupancy(policies), alive)

    def mean_over(cells: np.ndarray) -> np.ndarray:
        return errors[:, cells].mean(-1) if cells.any() else np.full(len(policies), np.nan)

    return {
        "mse_demo": mean_over(demo),
        "mse_rest": mean_over(alive & ~demo),
        "mse_optimal_visits": (errors * on_optimal).sum(-1),
        "mse_own_visits": (errors * on_own).sum(-1),
        "optimal_mass": mass[:, alive].mean(-1),
        "optimal_mass_own_visits": (mass * on_own).sum(-1),
    }
