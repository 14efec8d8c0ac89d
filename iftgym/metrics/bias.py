"""Where SFT's optimism lies on a Frozen Lake map: the bias map of a policy.

For every non-terminal cell ``s`` that can be reached from the start, let ``a*(s)`` be the optimal action there
(:meth:`FrozenLakeMDP.optimal_policy`, first best action) and ``t(s)`` the fewest moves that can reach ``s``
(:meth:`FrozenLakeMDP.first_arrival_times`). The map shows

    ``bias(s) = pi(a*(s) | s) - P(the policy's rollout is at s at time t(s)) * pi(a*(s) | s)``

in probability space (``space="prob"``), or ``-log P(at s at time t(s))`` in log space (``space="log"``): the
teacher-forced estimate minus the exact on-policy one, if a demonstration passed through ``s`` as early as
possible. On a deterministic map, the cells of the optimal demonstration get exactly the per-step bias of
:func:`iftgym.metrics.estimators.estimator_bias` with ``reach="state"`` (a shortest route visits each cell at
``t(s)``). Terminal and unreachable cells are NaN. Both spaces are >= 0: SFT never under-estimates.
:func:`iftgym.explain.bias.plot_bias_maps` draws it.
"""

from __future__ import annotations

import numpy as np

from iftgym.metrics.estimators import PolicyLike, policy_matrix
from iftgym.validate import one_of
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

SPACES = ("prob", "log")


def bias_map(policy: PolicyLike, world: FrozenLakeMDP, gamma: float | None = None, space: str = "prob") -> np.ndarray:
    """``(K, nrow, ncol)``: per cell, the teacher-forced estimate minus the exact on-policy one (module doc)."""
    one_of("space", space, SPACES)
    matrices = policy_matrix(policy)
    best = world.optimal_policy(gamma).argmax(axis=1)
    times = world.first_arrival_times()
    cells = np.flatnonzero(~world.terminal & ~np.isnan(times))
    arrival = times[cells].astype(int)
    out = np.full((matrices.shape[0], world.n_states), np.nan)
    for k, matrix in enumerate(matrices):
        reached = world.state_distributions(matrix, int(arrival.max()))[arrival, cells]
        forced = matrix[cells, best[cells]]
        with np.errstate(divide="ignore"):
            out[k, cells] = forced * (1 - reached) if space == "prob" else -np.log(reached)
    return out.reshape(-1, world.nrow, world.ncol)
