"""SFT's optimism along the optimal demonstration, for one policy trained with any rule on a Frozen Lake map.

:func:`run_bias` trains one seed of the paper's two-layer policy, then measures every exact estimator along the
map's optimal demonstration (:func:`iftgym.metrics.estimators.preference_estimates`) and the policy's bias map
(:func:`iftgym.metrics.bias.bias_map`). It returns data and prints nothing; ``iftgym bias`` renders it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iftgym.experiments.runner import run_algorithm
from iftgym.loop import TrainConfig, make_stages
from iftgym.metrics.bias import bias_map
from iftgym.metrics.estimators import PreferenceEstimates, demonstration_log_bias, preference_estimates
from iftgym.policies import MLPPolicy
from iftgym.types import Trajectory
from iftgym.validate import at_least, between
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP


@dataclass
class BiasConfig:
    """One ``iftgym bias`` run: ``algo`` (a rule or recipe) trained for ``steps`` on ``map`` from policy seed
    ``seed``; ``lam`` is IFT's lambda, for training IFT and for the IFT estimate."""

    map: str = "paper"
    algo: str = "sft"
    steps: int = 300
    seed: int = 0
    slippery: bool = False
    success_rate: float = 1 / 3
    gamma: float = 0.95
    lam: float = 0.2

    def __post_init__(self) -> None:
        at_least("steps", self.steps, 1)
        at_least("seed", self.seed, 0)
        between("lam", self.lam, 0, 1)


@dataclass
class BiasResult:
    """The world, the trained policy, the demonstration, every estimate along it, its summed log-bias and the
    policy's bias map ``(1, nrow, ncol)``."""

    world: FrozenLakeMDP
    policy: MLPPolicy
    demo: Trajectory
    estimates: PreferenceEstimates
    total_log_bias: float
    bias_map: np.ndarray


def run_bias(config: BiasConfig) -> BiasResult:
    """Train (through the one runner), then measure (see the module doc); IFT's estimate uses the lambda of the IFT
    that trained when one did (a variant's own, such as ``ift(lam=0)``), else ``config.lam``."""
    world = FrozenLakeMDP.from_map(config.map, config.slippery, config.success_rate, config.gamma)
    stages = make_stages(config.algo, config.steps, overrides={"ift": {"lam": config.lam}})
    run = run_algorithm(config.algo, stages, world, world.training_data(),
                        lambda: MLPPolicy(world.n_states, world.n_actions, seeds=[config.seed]),
                        TrainConfig(steps=config.steps, seed=config.seed))  # fmt: skip
    if run.skipped is not None:
        raise ValueError(f"map {config.map!r}: {run.skipped}")
    policy, demo = run.policy, world.optimal_demonstration(rng=0)
    estimates = preference_estimates(policy, world, demo, lam=run.setting("ift", "lam", config.lam))
    total = float(demonstration_log_bias(world, policy, demo, estimates.reach)[0])
    return BiasResult(world, policy, demo, estimates, total, bias_map(policy, world))
