"""The paper's Frozen Lake experiment: train every algorithm on the same map and seeds, score them exactly.

For each map: SFT and IFT learn from the optimal demonstration, DPO and ORPO from (optimal, sub-optimal) pairs,
PPO and REINFORCE from the environment's reward, Stable-Baselines3's PPO as an external baseline. All seeds of an
algorithm train at once as one batched model, and every metric is computed by dynamic programming on the exact
model (no Monte Carlo):

* ``mse``: mean squared error between the policy's state x action matrix and the optimal one, over
  non-terminal states (the paper's metric);
* ``success`` / ``greedy_success``: probability of reaching G from S, following the stochastic policy or its
  greedy (argmax) version;
* ``explored``: number of cells the policy visits with a discounted occupancy of at least
  ``EXPLORED_THRESHOLD`` (expected discounted visits), holes and goal included;
* ``bias``: SFT-style log-optimism along the optimal demonstration (see :mod:`iftgym.estimators`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from iftgym.frozen_lake import FrozenLakeMDP
from iftgym.maps import random_map, shortest_route
from iftgym.mdp import PairBatch, PreferencePair, StepBatch, Trajectory
from iftgym.policies import MLPPolicy
from iftgym.rules import RECIPES, RULES, make_recipe
from iftgym.stats import summarize
from iftgym.train import TrainConfig, TrainingData, train
from iftgym.validate import at_least, between, non_negative

SB3 = "sb3-ppo"
DEFAULT_ALGOS = ("sft", "ift", "dpo", "orpo", "ppo", SB3)
ALL_ALGOS = (*RULES, *RECIPES, SB3)
METRICS = ("mse", "success", "greedy_success", "explored", "bias")
LOWER_IS_BETTER = {"mse": True, "success": False, "greedy_success": False, "explored": False, "bias": True}
# metrics that are probabilities: their confidence intervals are clipped to [0, 1]
BOUNDS = {"success": (0.0, 1.0), "greedy_success": (0.0, 1.0)}
SCHEMA = "iftgym.compare/1"
EXPLORED_THRESHOLD = 0.01


@dataclass
class CompareConfig:
    """Everything that defines a comparison run; saved in ``results.json`` so the run can be repeated."""

    maps: list[str] = field(default_factory=lambda: ["paper"])
    algos: list[str] = field(default_factory=lambda: list(DEFAULT_ALGOS))
    seeds: int = 20
    steps: int = 300
    lr: float = 1e-2
    hidden: int = 64
    gamma: float = 0.95
    slippery: bool = False
    success_rate: float = 1 / 3
    demos: int = 1
    eval_every: int = 10
    sb3_timesteps: int = 5000
    random_maps: int = 0
    size: int = 6
    p_hole: float = 0.25
    rule_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The policies are tiny: torch's per-op threading overhead outweighs its gain (see benchmarks/).
    threads: int = 1

    def __post_init__(self) -> None:
        unknown = [a for a in self.algos if a not in ALL_ALGOS]
        if unknown:
            raise ValueError(f"unknown algorithm {', '.join(unknown)}: expected any of {', '.join(ALL_ALGOS)}")
        if not self.algos:
            raise ValueError(f"no algorithms given: expected any of {', '.join(ALL_ALGOS)}")
        at_least("seeds", self.seeds, 2, note="confidence intervals")
        for name in ("steps", "hidden", "demos", "sb3_timesteps", "threads"):
            at_least(name, getattr(self, name), 1)
        non_negative("random_maps", self.random_maps)
        non_negative("eval_every", self.eval_every)
        between("gamma", self.gamma, 0, 1, include_high=False)


def named_maps(config: CompareConfig) -> list[tuple[str, FrozenLakeMDP]]:
    """The maps of a run: the named ones, or ``random_maps`` random maps of side ``size`` (seeds 0..N-1)."""
    if config.random_maps:
        specs = [(f"random-{config.size}x{config.size}-seed{i}", random_map(config.size, config.p_hole, seed=i))
                 for i in range(config.random_maps)]  # fmt: skip
    else:
        specs = [(name, name) for name in config.maps]
    return [
        (name, FrozenLakeMDP.from_map(spec, slippery=config.slippery, success_rate=config.success_rate))
        for name, spec in specs
    ]


def second_route(model: FrozenLakeMDP) -> list[tuple[int, int]] | None:
    """The sub-optimal route: disjoint from the optimal one when the map has such a route, otherwise the
    shortest route whose first move differs from the optimal first move; ``None`` when neither exists."""
    route = model.suboptimal_route()
    if route is None:
        best = model.optimal_route()
        route = shortest_route(model.desc, blocked=frozenset(best[1:2])) if len(best) > 2 else None
    return route


def training_data(model: FrozenLakeMDP, config: CompareConfig) -> TrainingData:
    """Optimal demonstrations and (optimal, sub-optimal) pairs; on slippery maps each is a sampled rollout."""
    demos = [model.optimal_demonstration(config.gamma, rng=i) for i in range(config.demos)]
    route = second_route(model)
    pairs = None
    if route is not None:
        policy = model.route_policy(route, config.gamma)
        rejected = [model.rollout(policy, rng=10_000 + i) for i in range(config.demos)]
        pairs = PairBatch.from_pairs(model, [PreferencePair(c, r) for c, r in zip(demos, rejected)])
    return TrainingData(StepBatch.from_trajectories(model, demos), pairs)


def policy_metrics(
    model: FrozenLakeMDP, policies: np.ndarray, optimal: np.ndarray, config: CompareConfig, demo: Trajectory
) -> dict[str, np.ndarray]:
    """Exact per-seed metrics of ``policies`` (K x S x A); the bias is measured along ``demo``."""
    from iftgym.estimators import demonstration_log_bias

    alive = ~model.terminal
    greedy = np.eye(model.n_actions)[policies.argmax(-1)]
    occupancy = np.stack([model.occupancy(p, config.gamma) for p in policies])
    return {
        "mse": ((policies - optimal) ** 2)[:, alive].mean(axis=(1, 2)),
        "success": np.array([model.success_probability(p) for p in policies]),
        "greedy_success": np.array([model.success_probability(g) for g in greedy]),
        "explored": (occupancy >= EXPLORED_THRESHOLD).sum(-1).astype(float),
        "bias": demonstration_log_bias(model, policies, demo),
    }


def run_algorithm(model: FrozenLakeMDP, algo: str, data: TrainingData, config: CompareConfig, optimal: np.ndarray,
                  seeds: list[int] | None = None) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """Train one algorithm on all seeds at once (``seeds``, default ``0..config.seeds-1``); the K x S x A
    policies and the training curves."""
    seeds = list(range(config.seeds)) if seeds is None else seeds
    if algo == SB3:
        from iftgym.baselines import train_sb3_ppo

        return train_sb3_ppo(model, total_timesteps=config.sb3_timesteps, seeds=seeds), {}
    if any(RULES[part][0].data == "pairs" for part in algo.split("+")) and data.pairs is None:
        raise ValueError(f"map has no sub-optimal route, so {algo!r} has no preference pairs to train on")
    policy = MLPPolicy(model.n_states, model.n_actions, hidden=config.hidden, seeds=seeds)

    def evaluate(step: int, policy: MLPPolicy) -> dict[str, np.ndarray]:
        probs = policy.action_probs().numpy().astype(float)
        alive = ~model.terminal
        return {
            "mse": ((probs - optimal) ** 2)[:, alive].mean(axis=(1, 2)),
            "success": np.array([model.success_probability(p) for p in probs]),
        }

    rules = make_recipe(algo, config.rule_overrides)
    result = train(policy, rules, model, data, TrainConfig(steps=config.steps, lr=config.lr,
                   eval_every=config.eval_every), callback=evaluate)  # fmt: skip
    curves = {
        "steps": [step for step, _ in result.evaluations],
        **{key: np.stack([m[key] for _, m in result.evaluations], axis=1).tolist() for key in ("mse", "success")},
    }
    return policy.action_probs().numpy().astype(float), curves


def compare(config: CompareConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the comparison and return the results as a JSON-ready dict (see :data:`SCHEMA`)."""

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _compare(config, progress)
    finally:
        torch.set_num_threads(threads)


def _compare(config: CompareConfig, progress: Callable[[str], None] | None) -> dict[str, Any]:
    from iftgym import __version__

    results: dict[str, Any] = {"schema": SCHEMA, "version": __version__, "config": asdict(config), "maps": []}
    for name, model in named_maps(config):
        values, _, optimal = model.value_iteration(config.gamma)
        data = training_data(model, config)
        demo = model.optimal_demonstration(config.gamma, rng=0)
        entry: dict[str, Any] = {
            "name": name,
            "rows": list(model.desc),
            "optimal": {
                "policy": optimal.tolist(),
                "values": values.tolist(),
                "success": model.success_probability(optimal),
            },
            "algorithms": {},
        }
        for algo in config.algos:
            if progress is not None:
                progress(f"{name}: {algo}")
            start = time.perf_counter()
            try:
                policies, curves = run_algorithm(model, algo, data, config, optimal)
            except ValueError as err:
                entry["algorithms"][algo] = {"skipped": str(err)}
                continue
            wall = time.perf_counter() - start
            metrics = policy_metrics(model, policies, optimal, config, demo)
            entry["algorithms"][algo] = {
                "wall_time": wall,
                "per_seed": {key: value.tolist() for key, value in metrics.items()},
                "summary": {key: summarize(value, BOUNDS.get(key)) for key, value in metrics.items()},
                "policies": policies.tolist(),
                "curves": curves,
            }
        results["maps"].append(entry)
    if len(results["maps"]) > 1:
        results["across_maps"] = across_maps(results)
    return results


def across_maps(results: dict[str, Any]) -> dict[str, Any]:
    """Per algorithm: each metric's per-map mean over seeds, summarised over maps, and how often it ranks first."""
    summary: dict[str, Any] = {}
    algos = list(results["config"]["algos"])
    for metric in ("mse", "success", "explored"):
        per_map = {a: [] for a in algos}
        wins = dict.fromkeys(algos, 0)
        for entry in results["maps"]:
            scored = {a: r for a, r in entry["algorithms"].items() if "per_seed" in r}
            means = {a: float(np.mean(r["per_seed"][metric])) for a, r in scored.items()}
            for a, m in means.items():
                per_map[a].append(m)
            if means:
                best = (min if LOWER_IS_BETTER[metric] else max)(means.values())
                for a, m in means.items():  # a tie is a win for each algorithm that attains the best
                    wins[a] += bool(np.isclose(m, best, rtol=0, atol=1e-9))
        summary[metric] = {a: {**summarize(np.array(v), BOUNDS.get(metric)), "maps": len(v), "wins": wins[a]}
                           for a, v in per_map.items() if v}  # fmt: skip
    return summary


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``results.json`` written by :func:`compare`, checking its schema."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as err:
        raise ValueError(f"cannot read results file {str(path)!r}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"results file {str(path)!r} is not valid JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"results file {str(path)!r} is not an iftgym compare result (expected schema {SCHEMA})")
    return data
