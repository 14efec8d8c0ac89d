"""The one algorithm runner: every experiment — a comparison in any world, ``iftgym lm``, ``iftgym bias``, the sweeps
and the explorers — trains an algorithm through :func:`run_algorithm`.

An algorithm's name is parsed once into stages (:func:`iftgym.loop.make_stages`), and from then on the stages are
the only source of its rules' settings: a figure or an estimate that needs a trained rule's hyper-parameter (IFT's
lambda for its preference strip) reads it from the rule that trained (:meth:`AlgorithmRun.setting`), never from the
command line's overrides again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from iftgym.loop import EvalCallback, SnapshotHook, Stage, StepLog, TrainConfig, stage_batches, train
from iftgym.policies.base import Policy
from iftgym.rules.registry import base_name
from iftgym.types import StepBatch, TrainingData
from iftgym.world import World, seed_generators


@dataclass
class AlgorithmRun:
    """One algorithm trained on all seeds: the trained policy, its stages, every step's metrics ``(steps, K)`` (a
    registered rule's own logged metrics included), the evaluations ``(step, {metric: (K,)})``, the wall time and the
    compute it spent (``{"steps", "tokens", "seconds", "capped", "budget", "amount"}``: :class:`TrainResult`'s, and
    the budget it trained under); or, when the world lacks the data a stage needs, why it was ``skipped``."""

    algorithm: str
    stages: list[Stage]
    policy: Policy | None = None
    history: dict[str, np.ndarray] = field(default_factory=dict)
    evaluations: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list)
    wall_time: float = 0.0
    skipped: str | None = None
    compute: dict[str, float] = field(default_factory=dict)

    def setting(self, rule: str, key: str, default: Any = None) -> Any:
        """The value of ``key`` in the config of the first stage whose rule is ``rule`` (a base name such as
        ``"ift"``: its variants count), or ``default`` when no stage trains it."""
        for stage in self.stages:
            if base_name(stage.rule.name) == rule:
                return getattr(stage.rule.config, key)
        return default

    def stage_specs(self) -> list[dict[str, Any]]:
        """JSON-ready: each stage's rule, config, steps and learning rate."""
        return [stage.spec() for stage in self.stages]

    def curves(self, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The evaluations as JSON-ready curves, ``{"steps": [...], metric: [[per seed] per step]...}`` (shape
        ``(K, n)`` per metric)."""
        steps = [step for step, _ in self.evaluations]
        names = keys or (tuple(self.evaluations[0][1]) if self.evaluations else ())
        return {"steps": steps, **{key: np.stack([m[key] for _, m in self.evaluations], axis=1).tolist()
                                   for key in names if self.evaluations}}  # fmt: skip

    def history_means(self) -> dict[str, list[float]]:
        """Every logged metric, averaged over seeds, per step (what ``results.json`` keeps of the history)."""
        return {key: values.mean(-1).tolist() for key, values in self.history.items()}


def lacking_data(stages: list[Stage], data: TrainingData) -> list[str]:
    """The rules among ``stages`` whose kind of data (demonstrations, pairs) ``data`` does not hold."""
    return [stage.rule.name for stage in stages if not data.has(stage.rule.data)]


def check_batches(
    algorithms: Iterable[list[Stage]], data: TrainingData, batch_size: int, grad_accum: int, skip_lacking: bool = True
) -> None:
    """Every algorithm (its stages) finds its data, split as asked, before any trains: a batch size or an
    accumulation its data cannot be split by is refused now (:func:`iftgym.loop.stage_batches` raises), not after
    the others trained. ``skip_lacking``: an algorithm whose kind of data ``data`` lacks is not checked (it is skipped
    when it trains: a map without a second route); otherwise it is refused too."""
    for stages in algorithms:
        if not skip_lacking or not lacking_data(stages, data):
            stage_batches(stages, data, batch_size, grad_accum)


def run_algorithm(
    algorithm: str,
    stages: list[Stage],
    world: World,
    data: TrainingData,
    make_policy: Callable[[], Policy],
    config: TrainConfig,
    callback: EvalCallback | None = None,
    log: StepLog | None = None,
    no_pairs: str = "the data holds no preference pairs",
    snapshot: SnapshotHook | None = None,
) -> AlgorithmRun:
    """Train ``stages`` (the algorithm ``algorithm``, parsed once by the caller) on a fresh policy from
    ``make_policy`` in ``world`` with ``data``; ``callback`` evaluates it every ``config.eval_every`` steps and at the
    end, ``log`` receives every step's metrics, ``snapshot`` sees the live optimiser and rule between steps
    (:func:`iftgym.loop.train`). A world without the pairs a stage needs gives a skipped run, its
    reason ``no_pairs`` (the world's words for it, such as a map without a second route)."""
    lacking = lacking_data(stages, data)
    if lacking:
        return AlgorithmRun(algorithm, stages, skipped=f"{no_pairs}, so {', '.join(lacking)} in {algorithm!r} has no "
                                                       "preference pairs to train on")  # fmt: skip
    policy = make_policy()
    result = train(policy, stages, world, data, config, callback=callback, log=log, snapshot=snapshot)
    compute = {**result.compute, "budget": config.budget, "amount": config.budget_amount}
    return AlgorithmRun(algorithm, stages, policy, result.history, result.evaluations, result.wall_time,
                        compute=compute)  # fmt: skip


def check_world_samples(world: World, policy: Policy, name: str) -> None:
    """Sample one episode per seed and check what a rule will rely on: a ``StepBatch`` of shape ``(K, 1, T)``, ids
    and actions inside the world's sizes, and ``successor_probs`` of shape ``(..., n_ids)``; a world that breaks it is
    one ``ValueError`` naming the world, before any training."""

    def broken(what: str) -> ValueError:
        return ValueError(f"world {name!r} breaks the World contract: {what} (docs/design.md §4)")

    try:
        batch = world.sample(policy, 1, seed_generators(0, policy.seeds, 99))
        probs = world.successor_probs(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    except Exception as err:  # a plugin can fail in any way: one line naming the world
        raise broken(f"sampling failed: {type(err).__name__}: {str(err)[:200]}") from None
    if not isinstance(batch, StepBatch):
        raise broken(f"sample returned {type(batch).__name__}, expected a StepBatch")
    k = policy.n_seeds
    if batch.ids.dim() != 3 or tuple(batch.ids.shape[:2]) != (k, 1):
        raise broken(f"sample(policy, 1, ...) gave ids of shape {tuple(batch.ids.shape)}, expected ({k}, 1, T)")
    if batch.ids.numel() and not (int(batch.ids.min()) >= 0 and int(batch.ids.max()) < world.n_ids):
        raise broken(f"sample gave input ids outside 0..{world.n_ids - 1}")
    if batch.actions.numel() and not (int(batch.actions.min()) >= 0 and int(batch.actions.max()) < world.n_actions):
        raise broken(f"sample gave actions outside 0..{world.n_actions - 1}")
    if not isinstance(probs, torch.Tensor) or tuple(probs.shape) != (2, world.n_ids):
        shape = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
        raise broken(f"successor_probs of 2 ids gave {shape}, expected (2, {world.n_ids})")
