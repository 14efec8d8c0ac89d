"""Scores of a policy with memory on Frozen Lake, from its own rollouts.

A policy that reads the history of cells has no policy matrix, so the exact solvers do not apply: its success is
estimated from sampled episodes (each seed from its own generators, so a seed's score does not depend on the
others), and its distance to the optimal policy is measured where it is defined — at each step, between the action
distribution given the history so far and the optimal policy's row for the current cell — along the
demonstration (teacher-forced) and along the policy's own rollouts (discounted visits). The whole-grid ``mse``,
``greedy_success`` and ``explored`` are not defined for it and are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from iftgym.types import StepBatch
from iftgym.world import Actor, seed_generators
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

EPISODES = 200  # rollouts per seed
EVAL_SEED = 7_000  # the run seed of the evaluation rollouts (fixed: every row is scored on the same draws)


def _along(model: FrozenLakeMDP, policy: Actor, batch: StepBatch, weights: torch.Tensor) -> tuple[np.ndarray, ...]:
    """The squared error to the optimal row and the mass on optimal actions at each step of ``batch`` (the policy
    given that step's history), averaged with ``weights`` ``(K, B, T)`` (zero on padding): ``(K,)`` each."""
    with torch.no_grad():
        probs = torch.softmax(policy.logits_at(batch.ids).double(), -1).cpu()
    optimal = torch.from_numpy(model.optimal_matrix)[batch.ids.cpu()]  # (..., T, A)
    error = ((probs - optimal) ** 2).mean(-1)
    mass = (probs * (optimal > 0)).sum(-1)
    total = weights.sum(dim=(-2, -1))
    return tuple(((x * weights).sum(dim=(-2, -1)) / total).numpy() for x in (error, mass))


def rollout_scores(
    model: FrozenLakeMDP, policy: Actor, demos: StepBatch, episodes: int = EPISODES, seed: int = EVAL_SEED
) -> dict[str, np.ndarray]:
    """``success`` (the share of ``episodes`` rollouts per seed that reach G), ``mse_demo`` (along the
    demonstrations, teacher-forced), ``mse_own_visits`` and ``optimal_mass_own_visits`` (along the policy's own
    rollouts, each step weighted by ``gamma^t``), one ``(K,)`` array each; the measures that need a policy matrix
    are NaN."""
    generators: Sequence[torch.Generator] = seed_generators(seed, policy.seeds)
    rollouts = model.sample(policy, episodes, generators)
    success = (rollouts.rewards.sum(-1) > 0).double().mean(-1).cpu().numpy()
    discount = model.gamma ** torch.arange(rollouts.ids.shape[-1], dtype=torch.float64)
    own_error, own_mass = _along(model, policy, rollouts, rollouts.mask.cpu().double() * discount)
    demo_weights = (demos.mask & torch.from_numpy(~model.terminal)[demos.ids]).double()
    demo_error, _ = _along(model, policy, demos, demo_weights.expand(policy.n_seeds, *demo_weights.shape[-2:]))
    undefined = np.full(policy.n_seeds, np.nan)
    return {"mse": undefined, "success": success, "greedy_success": undefined, "explored": undefined,
            "mse_demo": demo_error, "mse_own_visits": own_error, "optimal_mass_own_visits": own_mass}  # fmt: skip
