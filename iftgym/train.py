"""The one training loop: any update rule (or recipe of rules) on any policy, K seeds at once.

Seeds are trained as one batched model: every seed's loss is computed in the same tensors and the per-seed
losses are summed before ``backward``. Seeds share no parameters and Adam/SGD act element-wise, so each seed
follows exactly the updates it would follow alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from iftgym.mdp import MDP, PairBatch, StepBatch
from iftgym.policies.base import Policy
from iftgym.rules import make_recipe
from iftgym.rules.base import Rule
from iftgym.validate import at_least, non_negative, one_of, positive

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
EvalCallback = Callable[[int, Policy], dict[str, np.ndarray]]


@dataclass
class TrainConfig:
    """Optimiser and loop settings (the rules' own hyper-parameters live in their config objects).

    ``steps`` are optimiser steps in total (a recipe splits them evenly between its stages); ``batch_size``
    draws that many trajectories or pairs per step (``None``: all of them); ``seed`` drives data sampling and
    rollouts; ``eval_every`` calls the evaluation callback every that many steps (0: only at the end).
    """

    steps: int = 300
    lr: float = 1e-2
    optimizer: str = "adam"
    weight_decay: float = 0.0
    batch_size: int | None = None
    seed: int = 0
    eval_every: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        at_least("steps", self.steps, 1)
        positive("lr", self.lr)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        non_negative("weight_decay", self.weight_decay)
        if self.batch_size is not None:
            at_least("batch_size", self.batch_size, 1, note="or None for all")
        non_negative("eval_every", self.eval_every)


@dataclass
class TrainingData:
    """What the rules train on: demonstrations for SFT/IFT/online DPO, preference pairs for DPO/ORPO.

    When only pairs are given, their chosen trajectories serve as demonstrations (as in ``sft+dpo``).
    """

    demos: StepBatch | None = None
    pairs: PairBatch | None = None

    def for_rule(self, rule: Rule) -> StepBatch | PairBatch | None:
        if rule.data == "env":
            return None
        if rule.data == "pairs":
            if self.pairs is None:
                raise ValueError(f"rule {rule.name!r} trains on preference pairs, but none were given")
            return self.pairs
        demos = self.demos if self.demos is not None else (self.pairs.chosen if self.pairs is not None else None)
        if demos is None:
            raise ValueError(f"rule {rule.name!r} trains on demonstrations, but none were given")
        return demos


@dataclass
class TrainResult:
    """The trained policy, per-step metrics (each a ``(steps, K)`` array) and evaluations ``(step, metrics)``."""

    policy: Policy
    history: dict[str, np.ndarray]
    evaluations: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list)
    wall_time: float = 0.0


def _minibatch(data: StepBatch | PairBatch | None, size: int | None, generator: torch.Generator):
    if data is None or size is None:
        return data
    if isinstance(data, PairBatch):
        n = data.chosen.ids.shape[-2]
        if size >= n:
            return data
        index = torch.randperm(n, generator=generator)[:size]
        return PairBatch(*(_select(b, index) for b in (data.chosen, data.rejected)))
    if size >= data.ids.shape[-2]:
        return data
    return _select(data, torch.randperm(data.ids.shape[-2], generator=generator)[:size])


def _select(batch: StepBatch, index: torch.Tensor) -> StepBatch:
    index = index.to(batch.ids.device)
    return StepBatch(*(t.index_select(-2, index) for t in (batch.ids, batch.actions, batch.mask, batch.rewards)))


def train(
    policy: Policy,
    algorithm: str | Rule | Sequence[Rule],
    world: MDP,
    data: TrainingData | StepBatch | PairBatch | None = None,
    config: TrainConfig | None = None,
    callback: EvalCallback | None = None,
) -> TrainResult:
    """Train ``policy`` in place with a rule, a list of rules (run one after the other), or a rule/recipe name.

    Returns the policy, the metrics of every step and the callback's evaluations.
    """
    config = config or TrainConfig()
    rules = make_recipe(algorithm) if isinstance(algorithm, str) else (
        [algorithm] if isinstance(algorithm, Rule) else list(algorithm)
    )  # fmt: skip
    if not isinstance(data, TrainingData):
        data = TrainingData(pairs=data) if isinstance(data, PairBatch) else TrainingData(demos=data)
    stage_data = [data.for_rule(rule) for rule in rules]  # fail before training if anything is missing
    device = policy.embedding_table().device
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    torch.manual_seed(config.seed)
    bounds = np.linspace(0, config.steps, len(rules) + 1).round().astype(int)
    history: dict[str, list[np.ndarray]] = {}
    evaluations: list[tuple[int, dict[str, np.ndarray]]] = []
    start = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        disable=not config.progress, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"{'+'.join(r.name for r in rules)} x{policy.n_seeds} seeds", total=config.steps)
        for rule, stage, begin, end in zip(rules, stage_data, bounds[:-1], bounds[1:]):
            if stage is not None:
                stage = stage.to(device) if isinstance(stage, StepBatch) else PairBatch(
                    stage.chosen.to(device), stage.rejected.to(device))  # fmt: skip
            rule.setup(policy, world, generator)
            optimizer = OPTIMIZERS[config.optimizer](
                [*policy.parameters(), *rule.parameters()], lr=config.lr, weight_decay=config.weight_decay
            )
            for step in range(begin, end):
                loss, metrics = rule.loss(policy, _minibatch(stage, config.batch_size, generator), step - begin)
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                optimizer.step()
                rule.after_step(policy)
                for key, value in metrics.items():
                    history.setdefault(key, []).append(value.detach().float().cpu().numpy())
                if callback is not None and config.eval_every and (step + 1) % config.eval_every == 0:
                    evaluations.append((step + 1, callback(step + 1, policy)))
                progress.advance(task)
    if callback is not None and (not evaluations or evaluations[-1][0] != config.steps):
        evaluations.append((config.steps, callback(config.steps, policy)))
    stacked = {key: np.stack(values) for key, values in history.items()}
    return TrainResult(policy, stacked, evaluations, time.perf_counter() - start)
