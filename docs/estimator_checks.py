"""Compute the exact checks of the new rules' estimators and write them to ``docs/results/estimators.json``, which
``docs/make_readme_tables.py`` renders as the README's ``estimators`` table.

Every number is a finite sum over the enumerated episodes of a Frozen Lake map (:mod:`iftgym.metrics.rule_estimators`:
no sampling), in the setting of ``tests/metrics/test_rule_estimators.py`` and ``docs/design.md`` §3: the 4x4 map,
episodes of at most 8 moves, the policy half the optimal policy and half uniform (J = 0.1988), and for the checks over
two starts (prompts) a second, easy map of the same size (``SFFF/GFFF/FFFF/FFFF``, J = 0.5819). It writes:

* ``groups``: per group size G = 2, 4, 8, the exact expected update of RLOO and GRPO (``scale_rewards`` ``"group"``
  and ``"none"``, Dr. GRPO) against the true gradient ``grad J``: gain (projection coefficient on ``grad J``, 1 for
  an unbiased estimator), cosine and relative error, on one start and over the two; and the cosine of GRPO's loss
  types' length aggregations (``grpo``, ``dapo``, ``dr_grpo``) with RLOO's unbiased advantage;
* ``importance``: per perturbation scale of the new policy (0.1, 0.3, 1.0, seed 0), the expectations under the old
  policy of each importance weight and of the weighted reward against J under the new policy, and the cosine of
  each weighted policy gradient to ``grad J`` there.

    python docs/estimator_checks.py   # seconds; then python docs/make_readme_tables.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from iftgym import FrozenLakeMDP
from iftgym.io import write_json
from iftgym.metrics.rule_estimators import (
    Episodes,
    enumerate_episodes,
    group_gradient,
    importance_weights_exact,
    perturbed,
)

OUT = Path(__file__).resolve().parent / "results" / "estimators.json"
SCHEMA = "iftgym.estimators/1"
COMMAND = "python docs/estimator_checks.py"
HORIZON = 8
SECOND_START = ["SFFF", "GFFF", "FFFF", "FFFF"]  # an easy map of the same size: the second prompt
GROUP_SIZES = (2, 4, 8)
SCALES = (0.1, 0.3, 1.0)
# (name, estimator, aggregate, scale_rewards, over both starts) of each group check
GROUP_CHECKS = (
    ("rloo", "rloo", "sequence", "group", False),
    ("rloo_two_starts", "rloo", "sequence", "group", True),
    ("grpo", "grpo", "sequence", "group", False),
    ("grpo_two_starts", "grpo", "sequence", "group", True),
    ("dr_grpo_scaling", "grpo", "sequence", "none", False),
    ("rloo_loss_grpo", "rloo", "grpo", "group", False),
    ("rloo_loss_dapo", "rloo", "dapo", "group", False),
    ("rloo_loss_dr_grpo", "rloo", "dr_grpo", "group", False),
)


def group_checks(starts: list[Episodes], matrix: Any) -> dict[str, dict[str, dict[str, float]]]:
    """Per check of :data:`GROUP_CHECKS` and group size, the gain, cosine, relative error and orthogonal part of the
    exact expected update against ``grad J`` (``starts[-1]`` is the map of the single-start checks)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, estimator, aggregate, scale_rewards, both in GROUP_CHECKS:
        out[name] = {}
        for G in GROUP_SIZES:
            result = group_gradient(starts if both else starts[-1], matrix, G, estimator, aggregate, scale_rewards)
            out[name][str(G)] = {"gain": result.gain, "cosine": result.cosine, "relative_error": result.relative_error,
                                 "perpendicular": result.perpendicular}  # fmt: skip
    return out


def importance_checks(episodes: Episodes, old: Any) -> list[dict[str, Any]]:
    """Per scale of :data:`SCALES`, the exact expectations of every importance weight towards the perturbed policy."""
    rows = []
    for scale in SCALES:
        result = importance_weights_exact(episodes, old, perturbed(old, scale, seed=0))
        rows.append({"scale": scale, "kl": result.kl, "success_old": result.success_old,
                     "success_new": result.success_new, "mean": result.mean, "reward": result.reward,
                     "token_sum_ratio": result.token_sum_ratio,
                     "cosine": {name: result.cosine(name) for name in result.gradient}})  # fmt: skip
    return rows


def main() -> int:
    world = FrozenLakeMDP.from_map("4x4")
    policy = 0.5 * world.optimal_matrix + 0.5 / world.n_actions
    starts = [enumerate_episodes(FrozenLakeMDP.from_map(SECOND_START), HORIZON), enumerate_episodes(world, HORIZON)]
    successes = [float(start.probs(policy) @ start.reward) for start in starts]
    write_json({
        "schema": SCHEMA,
        "command": COMMAND,
        "setting": {"map": "4x4", "horizon": HORIZON, "policy": "half optimal, half uniform",
                    "second_start": "/".join(SECOND_START), "success": successes[1], "second_success": successes[0]},
        "groups": group_checks(starts, policy),
        "importance": importance_checks(starts[1], policy),
    }, OUT)  # fmt: skip
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
