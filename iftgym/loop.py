"""The one training loop: any update rule, or a sequence of stages of rules, on any policy, K seeds at once.

A run is a list of :class:`Stage` (a rule, its steps, its learning rate). A recipe such as ``"sft+dpo"`` is one
grammar everywhere (:func:`make_stages`): its rules train one after the other, splitting the steps evenly, each
stage with a fresh optimiser and, if given, its own learning rate (preference and RL stages usually need smaller
steps than SFT).

Seeds are trained as one batched model: every seed's loss is computed in the same tensors and the per-seed losses
are summed before ``backward``. Under ``torchrun`` each process trains on its share of every minibatch and PyTorch's
``DistributedDataParallel`` averages the gradients (:mod:`iftgym.distributed`); ``grad_accum`` splits a step's
minibatch into micro-batches whose gradients add up. Either way each share's loss counts by its weight (its
trajectories or pairs, or its tokens for a token average: :meth:`Rule.batch_weight`), so the step is the one a single
process takes on the whole minibatch. A progress bar per stage shows the
step, the loss and the time left; ``log`` receives every step's metrics as they are measured. Seeds share no
parameters and Adam/SGD act element-wise, so each seed follows the
updates it would follow alone. Randomness keeps that promise too: a rule draws for seed k from its own generator
(:func:`iftgym.world.seed_generators` of the run's ``seed``, the policy's seed k and the stage), and the order of
minibatches is drawn from the run's ``seed`` alone, the same for every seed (as if one data loader fed each).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from iftgym import distributed
from iftgym.errors import RunFailed, TrainingDiverged
from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.registry import base_name, is_built_in, make_rule, parse_recipe, rule_spec
from iftgym.types import PairBatch, StepBatch, TrainingData
from iftgym.validate import BUDGETS, MAX_GRAD_ACCUM, MAX_STEPS, at_least, non_negative, one_of, positive
from iftgym.world import World, seed_generators

BUDGET_STEP_CAP = 100  # a budgeted stage takes at most this many times its planned steps
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
EvalCallback = Callable[[int, Policy], dict[str, np.ndarray]]
StepLog = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Snapshot:
    """The loop between two optimiser steps, as :func:`train`'s ``snapshot`` hook sees it: what the next step would
    use, live (not copies: a hook that needs to step copies them, as :func:`iftgym.metrics.update.update_field` does,
    and must leave them as it found them; but before the first step a hook may give the optimiser the state another
    run's ended with, ``optimizer.load_state_dict``, so that training goes on from it: the tiny-LM explorer's
    ``continue``).

    Attributes:
        step: optimiser steps taken so far in the run (0: before the first; the run's total: after the last).
        stage: the index (from 0) of the stage whose optimiser and rule these are: the stage the next step belongs
            to, or after the last step the last stage.
        stage_step: the step of that stage the next step would be (the ``step`` its rule's ``loss`` receives: IFT's
            lambda schedule reads it); after the last step, that stage's number of steps.
        policy: the policy being trained.
        optimizer: the stage's optimiser, with its state (Adam's moments after ``stage_step`` steps).
        rule: the stage's rule, set up and with its data prepared.
    """

    step: int
    stage: int
    stage_step: int
    policy: Policy
    optimizer: torch.optim.Optimizer
    rule: Rule


SnapshotHook = Callable[[Snapshot], None]


@dataclass
class TrainConfig:
    """Optimiser and loop settings (the rules' own hyper-parameters live in their config objects).

    ``steps`` are optimiser steps in total (a recipe splits them evenly between its stages); ``lr`` is the
    learning rate of every stage that sets none; ``batch_size`` draws that many trajectories or pairs per step
    (``None``: all of them); ``grad_accum`` splits each step's minibatch of demonstrations or pairs into that many
    micro-batches whose gradients add up before the one optimiser step (the same step as one pass over the
    minibatch: each micro-batch's loss counts by its share of the minibatch, :meth:`Rule.batch_weight`, so token
    averages stay exact; rules that sample their own episodes sample as usual); ``seed`` drives minibatch order and
    every random draw of the rules; ``budget`` is what a run spends (:data:`BUDGETS`): with ``budget_amount``, each
    stage trains until it has spent its even share of that many token passes or seconds of training (at most
    :data:`BUDGET_STEP_CAP` times its steps), rather than for its steps; ``eval_every`` calls the evaluation
    callback every that many steps (0: only at the end); ``progress`` shows a progress bar.
    """

    steps: int = 300
    lr: float = 1e-2
    optimizer: str = "adam"
    weight_decay: float = 0.0
    batch_size: int | None = None
    grad_accum: int = 1
    budget: str = "steps"
    budget_amount: float | None = None
    seed: int = 0
    eval_every: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        at_least("steps", self.steps, 1, high=MAX_STEPS)
        positive("lr", self.lr)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        non_negative("weight_decay", self.weight_decay)
        if self.batch_size is not None:
            at_least("batch_size", self.batch_size, 1, note="or None for all")
        at_least("grad_accum", self.grad_accum, 1, high=MAX_GRAD_ACCUM)
        one_of("budget", self.budget, BUDGETS)
        if self.budget_amount is not None:
            positive("budget_amount", self.budget_amount)
        at_least("seed", self.seed, 0)
        at_least("eval_every", self.eval_every, 0)


@dataclass
class Stage:
    """One stage of a run: ``rule`` trained for ``steps`` optimiser steps at learning rate ``lr`` (``None``: the
    run's :attr:`TrainConfig.lr`)."""

    rule: Rule
    steps: int
    lr: float | None = None

    def __post_init__(self) -> None:
        at_least(f"steps of stage {self.rule.name!r}", self.steps, 1, high=MAX_STEPS)
        if self.lr is not None:
            positive(f"learning rate of stage {self.rule.name!r}", self.lr)

    def spec(self) -> dict[str, Any]:
        """JSON-ready: the rule's name and config, the steps and the learning rate."""
        return {**rule_spec(self.rule), "steps": self.steps, "lr": self.lr}


Algorithm = str | Rule | Stage | Sequence[Rule | Stage]


def make_stages(
    algorithm: Algorithm,
    steps: int,
    stage_lrs: Mapping[str, float] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Stage]:
    """The stages of an algorithm: a recipe (``"sft+dpo"``), a rule, or a list of rules and stages.

    Rules without a stage of their own split ``steps`` evenly (rounded; a recipe needs at least one step per
    rule), in order. ``stage_lrs`` sets the learning rate of a rule's stage by rule name (``{"dpo": 1e-3}``), and
    ``overrides`` the hyper-parameters of rules built from a recipe by rule name (``{"ift": {"lam": 0.3}}``); both
    apply to the rule's variants too (``ift(gamma=0)``), whose own settings come first.
    """
    at_least("steps", steps, 1, high=MAX_STEPS)
    stage_lrs, overrides = dict(stage_lrs or {}), dict(overrides or {})
    if isinstance(algorithm, str):
        parts: list[Rule | Stage] = [make_rule(name, **overrides.get(base_name(name), {}))
                                     for name in parse_recipe(algorithm)]  # fmt: skip
    elif isinstance(algorithm, (Rule, Stage)):
        parts = [algorithm]
    else:
        parts = list(algorithm)
    if not parts:
        raise ValueError("no stages: expected a rule name, a recipe such as sft+dpo, or a list of rules")
    rules = [part for part in parts if isinstance(part, Rule)]
    if rules and steps < len(rules):
        raise ValueError(f"steps={steps} is out of range for {'+'.join(r.name for r in rules)!r}: expected at least "
                         f"{len(rules)}, one step per stage")  # fmt: skip
    bounds = iter(np.diff(np.linspace(0, steps, len(rules) + 1).round().astype(int)).tolist())
    return [part if isinstance(part, Stage) else Stage(part, next(bounds), _stage_lr(stage_lrs, part.name))
            for part in parts]  # fmt: skip


def _stage_lr(stage_lrs: Mapping[str, float], name: str) -> float | None:
    """The learning rate set for a rule's stage: by its name, else by its base rule's (a variant's)."""
    return stage_lrs.get(name, stage_lrs.get(base_name(name)))


def check_algorithms(
    algos: Sequence[str],
    steps: int,
    stage_lrs: Mapping[str, float],
    overrides: Mapping[str, Mapping[str, Any]],
    extra: Sequence[str] = (),
) -> None:
    """Check a run's algorithms before any training: each a recipe of registered rules (or one of ``extra``,
    such as an external baseline), none listed twice, enough ``steps`` for every stage, and learning rates and
    hyper-parameters only for rules some algorithm runs (a setting that could not take effect is an error)."""
    if isinstance(algos, str) or not isinstance(algos, list | tuple):
        raise ValueError(f"algos={algos!r} is {type(algos).__name__}: expected a list of rule names or recipes")
    if not algos:
        raise ValueError("no algorithms given: expected rule names such as sft, ift, dpo, or recipes such as sft+dpo")
    used: set[str] = set()
    for algo in algos:
        if not isinstance(algo, str):
            raise ValueError(f"algorithm {algo!r} is {type(algo).__name__}: expected a rule name or recipe")
        if list(algos).count(algo) > 1:
            raise ValueError(f"algorithm {algo!r} is listed twice: its results would overwrite each other")
        if algo in extra:
            continue
        stages = make_stages(algo, steps, stage_lrs, overrides)  # unknown names or hyper-parameters fail here
        used.update(base_name(stage.rule.name) for stage in stages)
    for name, lr in stage_lrs.items():
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise ValueError(f"stage learning rate {name}={lr} is invalid: expected RULE=LR with LR > 0")
        positive(f"stage learning rate {name}", lr)
    runs = ", ".join(sorted(used)) or "none"
    for what, names in (("a learning rate is", stage_lrs), ("hyper-parameters are", overrides)):
        for name in names:
            if name not in used:
                raise ValueError(f"{what} set for rule {name!r}, which no algorithm runs (rules run: {runs})")


@dataclass
class TrainResult:
    """The trained policy, per-step metrics (each a ``(steps, K)`` array; a metric of one stage only has that
    stage's rows), evaluations ``(step, metrics)``, the stages run, the wall time in seconds and the compute spent
    (``{"steps", "tokens", "seconds", "capped"}``: optimiser steps, token passes per seed of every policy the rules
    ran, seconds of training steps alone; ``capped``: a budgeted stage stopped at its step cap)."""

    policy: Policy
    history: dict[str, np.ndarray]
    evaluations: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list)
    wall_time: float = 0.0
    stages: list[dict[str, Any]] = field(default_factory=list)
    compute: dict[str, float] = field(default_factory=dict)


def _minibatch(data: StepBatch | PairBatch | None, size: int | None, generator: torch.Generator):
    if data is None or size is None or size >= data.size:
        return data
    return data.select(torch.randperm(data.size, generator=generator)[:size])


class _RuleStep(nn.Module):
    """A rule's loss as a module of the policy (and the rule's own weights), so that ``DistributedDataParallel``
    sees the forward pass it averages the gradients of."""

    def __init__(self, policy: Policy, rule: Rule) -> None:
        super().__init__()
        self.policy, self.rule = policy, rule
        self.rule_parameters = nn.ParameterList(rule.parameters())

    def forward(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.rule.loss(self.policy, batch, step)


def _stepper(policy: Policy, rule: Rule) -> nn.Module:
    """The rule's loss, wrapped for data-parallel training when several processes train. A rule that reads its
    inputs from a frozen copy of the encoding table (IFT, ``sft(embedding="frozen")``) leaves the table without a
    gradient, which DistributedDataParallel must be told to expect (it costs a pass over the graph per step)."""
    module = _RuleStep(policy, rule)
    if distributed.world_size() == 1:
        return module
    devices = [policy.device] if policy.device.type == "cuda" else None
    frozen_inputs = getattr(rule.config, "embedding", None) == "frozen"
    return DistributedDataParallel(module, device_ids=devices, find_unused_parameters=frozen_inputs)


def _micro_batches(batch: StepBatch | PairBatch | None, parts: int) -> list[StepBatch | PairBatch | None]:
    """``batch`` in ``parts`` contiguous micro-batches of (nearly) equal size; a rule's own sampling (``None``) is not
    split."""
    if batch is None or parts == 1:
        return [batch]
    if parts > batch.size:
        raise ValueError(f"grad_accum={parts} is out of range: expected at most the minibatch's {batch.size} "
                         "trajectories or pairs (per process), so that no micro-batch is empty")  # fmt: skip
    return [batch.select(index) for index in torch.arange(batch.size).tensor_split(parts)]


def _accumulated_step(
    rule: Rule, stepper: nn.Module, policy: Policy, batch: Any, step: int, parts: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step's gradient (left in ``.grad``), its loss and metrics, from ``parts`` micro-batches of
    ``batch`` on this process. Each micro-batch's loss counts by its share ``w / W`` of the step's whole weight ``W``
    (summed over the micro-batches and the processes; :meth:`Rule.batch_weight`: its trajectories or pairs, or its
    target tokens for a token average), times the number of processes because ``DistributedDataParallel`` averages
    their gradients: so the step's loss is the one-process, one-batch loss, however the minibatch is split. The
    returned loss and metrics are this process's weighted shares (the sum over processes is the step's)."""
    micro = _micro_batches(batch, parts)
    if len(micro) == 1 and distributed.world_size() == 1:  # the whole step on one process: its share is 1
        loss, metrics = _rule_step(rule, stepper, policy, batch, step)
        loss.sum().backward()
        return loss.detach(), {key: value.detach().float() for key, value in metrics.items()}
    weights = [torch.as_tensor(rule.batch_weight(part), dtype=torch.float64, device=policy.device) for part in micro]
    total = distributed.sum_over_processes(torch.stack(torch.broadcast_tensors(*weights)).sum(0))
    processes = distributed.world_size()
    loss_sum: torch.Tensor | float = 0.0
    metric_sums: dict[str, torch.Tensor] = {}
    for i, (part, weight) in enumerate(zip(micro, weights)):
        share = torch.where(total > 0, weight / total.clamp(min=1e-300), 1.0 / (len(micro) * processes))
        last = i == len(micro) - 1
        with nullcontext() if last or not hasattr(stepper, "no_sync") else stepper.no_sync():
            loss, metrics = _rule_step(rule, stepper, policy, part, step, collect=i == 0)
            (loss * (share * processes).to(loss.dtype)).sum().backward()
        loss_sum = loss_sum + loss.detach() * share.to(loss.dtype)
        for key, value in metrics.items():
            value = value.detach().float()
            part_share = share.float() if value.dim() else share.float().mean()
            metric_sums[key] = metric_sums.get(key, 0.0) + value * part_share
    return loss_sum, metric_sums


def _rule_step(
    rule: Rule, stepper: nn.Module, policy: Policy, batch: Any, step: int, collect: bool = True
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step of ``rule`` (its ``collect`` phase, where ``collect``: once per step, before the first micro-batch;
    then its loss). A rule that is not one of iftgym's own is held
    to the Rule contract on every step — a ``(K,)`` loss with a gradient, a dict of ``(K,)`` or scalar numeric metrics
    — and whatever it raises (``SystemExit`` included) ends the run in one line naming the rule
    (:class:`~iftgym.errors.RunFailed`): a plugin's bug is reported, not shown as iftgym's traceback."""
    if is_built_in(rule.name):
        if collect:
            rule.collect(policy, step)
        return stepper(batch, step)
    try:
        if collect:
            rule.collect(policy, step)
        result = stepper(batch, step)
    except (Exception, SystemExit) as err:  # a plugin's code can fail in any way
        raise RunFailed(f"rule {rule.name!r} failed at step {step + 1}: {type(err).__name__}: "
                        f"{str(err)[:200]}") from None  # fmt: skip
    return _check_step(rule.name, result, policy.n_seeds)


def _check_step(name: str, result: Any, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    def broken(what: str) -> RunFailed:
        return RunFailed(f"rule {name!r} breaks the Rule contract: {what} (docs/design.md §5)")

    if not (isinstance(result, tuple) and len(result) == 2):
        raise broken(f"loss() returned {type(result).__name__}, expected a (loss, metrics) pair")
    loss, metrics = result
    if not isinstance(loss, torch.Tensor) or tuple(loss.shape) != (k,):
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise broken(f"its loss is {shape}, expected one loss per seed, shape ({k},)")
    if not loss.requires_grad:
        raise broken("its loss has no gradient (computed without the policy, or detached)")
    if not isinstance(metrics, dict):
        raise broken(f"its metrics are {type(metrics).__name__}, expected a dict of tensors")
    checked = {}
    for key, value in metrics.items():
        value = torch.as_tensor(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        if not (isinstance(key, str) and isinstance(value, torch.Tensor) and value.dtype.is_floating_point
                and tuple(value.shape) in ((k,), ())):  # fmt: skip
            raise broken(f"metric {str(key)[:40]!r} is not a ({k},) or scalar float tensor")
        checked[key] = value.expand(k) if value.dim() == 0 else value
    return loss, checked


def stage_batches(
    stages: Sequence[Stage], data: TrainingData, batch_size: int | None, grad_accum: int = 1
) -> list[StepBatch | PairBatch | None]:
    """The data each stage trains on (``None`` for a stage that samples its own), checked before any training: every
    stage finds its data, and its minibatches of ``batch_size`` (``None``: all of it) split evenly over the
    ``torchrun`` processes, each share into ``grad_accum`` micro-batches that are not empty."""
    batches = [data.for_kind(stage.rule.data, stage.rule.name) for stage in stages]
    for stage, batch in zip(stages, batches):
        if batch is not None:
            size = min(batch.size, batch_size or batch.size)
            distributed.check_batch(size)
            if grad_accum > size // distributed.world_size():
                raise ValueError(f"grad_accum={grad_accum} is out of range for rule {stage.rule.name!r}: expected at "
                                 f"most its {size // distributed.world_size()} trajectories or pairs per step (per "
                                 "process), so that no micro-batch is empty")  # fmt: skip
    return batches


def _named(value: object) -> str:
    """A value as an error message names it: its text cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def check_train_arguments(
    policy: object,
    algorithm: object,
    world: object,
    data: object,
    config: object,
    callback: object,
    log: object,
    snapshot: object = None,
) -> None:
    """:func:`train`'s arguments checked as the command line checks its own, before any work: each of the right type
    (a ``TypeError`` naming the argument), and the policy sized for the world (its input ids and actions those of
    the world, a ``ValueError`` naming both)."""
    if not isinstance(policy, Policy):
        raise TypeError(f"policy={_named(policy)} is {type(policy).__name__}: expected an iftgym Policy (such as "
                        "TabularPolicy, MLPPolicy, TinyGPT)")  # fmt: skip
    one = isinstance(algorithm, (str, Rule, Stage))
    if not one and not (isinstance(algorithm, Sequence) and all(isinstance(p, (Rule, Stage)) for p in algorithm)):
        raise TypeError(f"algorithm={_named(algorithm)} is {type(algorithm).__name__}: expected a rule or recipe name "
                        "('ift', 'sft+ppo'), a Rule, a Stage, or a list of Rules and Stages")  # fmt: skip
    sizes = {name: getattr(world, name, None) for name in ("n_ids", "n_actions")}
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in sizes.values()):
        raise TypeError(f"world={_named(world)} is {type(world).__name__}, not a world: expected an iftgym World "
                        "with integer n_ids and n_actions (such as FrozenLakeMDP, TokenWorld)")  # fmt: skip
    if data is not None and not isinstance(data, TrainingData | StepBatch | PairBatch):
        raise TypeError(f"data={_named(data)} is {type(data).__name__}: expected None (the world's own), "
                        "TrainingData, a StepBatch or a PairBatch")  # fmt: skip
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config={_named(config)} is {type(config).__name__}: expected a TrainConfig or None, e.g. "
                        "TrainConfig(steps=300, lr=1e-2)")  # fmt: skip
    for name, function in (("callback", callback), ("log", log), ("snapshot", snapshot)):
        if function is not None and not callable(function):
            raise TypeError(f"{name}={_named(function)} is {type(function).__name__}: expected a function or None")
    n_ids = getattr(policy, "n_ids", None)
    if n_ids is None:  # the rows of its encoding table
        with torch.no_grad():
            n_ids = policy.embedding_table().shape[-2]
    if (n_ids, policy.n_actions) != (sizes["n_ids"], sizes["n_actions"]):
        raise ValueError(f"the policy reads {n_ids} input ids and has {policy.n_actions} actions, the world "
                         f"{type(world).__name__} has {sizes['n_ids']} input ids and {sizes['n_actions']} actions: "
                         "expected a policy sized for the world")  # fmt: skip


def train(
    policy: Policy,
    algorithm: Algorithm,
    world: World,
    data: TrainingData | StepBatch | PairBatch | None = None,
    config: TrainConfig | None = None,
    callback: EvalCallback | None = None,
    log: StepLog | None = None,
    snapshot: SnapshotHook | None = None,
) -> TrainResult:
    """Train ``policy`` in place, all its seeds at once, and return the policy, the metrics of every step and the
    callback's evaluations.

    Args:
        policy: K seeds of any policy.
        algorithm: a rule or recipe name (``"ift"``, ``"sft+ppo"``), a rule, a :class:`Stage`, or a list of them
            (see :func:`make_stages`).
        world: the world the rules train in (see :class:`iftgym.world.World`).
        data: demonstrations and/or pairs; ``None`` takes ``world.training_data()`` when a stage needs data.
        config: loop settings (:class:`TrainConfig`).
        callback: ``callback(step, policy) -> {metric: (K,) array}``, called every ``config.eval_every`` steps and
            after the last.
        log: called after every optimiser step with ``{"step", "stage", "rule", metric: [one value per seed]...}``
            (under ``torchrun``, the metrics averaged over the processes).
        snapshot: called before every optimiser step and once after the last with a :class:`Snapshot`: the live
            policy, the current stage's optimiser and set-up rule, and where the run stands, so that what the next
            step would do can be computed honestly mid-training (``iftgym compare --update-maps``). A hook that
            acts at a few steps returns at once at the others.

    Arguments of the wrong type raise ``TypeError``, and a policy not sized for the world ``ValueError``, before any
    work (:func:`check_train_arguments`).
    """
    check_train_arguments(policy, algorithm, world, data, config, callback, log, snapshot)
    config = config or TrainConfig()
    stages = make_stages(algorithm, config.steps)
    if data is None and any(stage.rule.data != "env" for stage in stages):
        data = world.training_data()
    if not isinstance(data, TrainingData):
        data = TrainingData(pairs=data) if isinstance(data, PairBatch) else TrainingData(demos=data)
    stage_data = stage_batches(stages, data, config.batch_size, config.grad_accum)
    total = sum(stage.steps for stage in stages)  # planned; a budget decides the steps of a budgeted run
    history: dict[str, list[np.ndarray]] = {}
    evaluations: list[tuple[int, dict[str, np.ndarray]]] = []
    compute: dict[str, float] = {"steps": 0, "tokens": 0, "seconds": 0.0, "capped": False}
    budgeted = config.budget != "steps" and config.budget_amount is not None
    start, done = time.perf_counter(), 0
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(), disable=not (config.progress and distributed.is_main()), transient=True,
    ) as progress:  # fmt: skip
        for index, (stage, batch) in enumerate(zip(stages, stage_data)):
            rule = stage.rule
            task = progress.add_task(f"stage {index + 1}/{len(stages)}: {rule.name} x{policy.n_seeds} seeds",
                                     total=stage.steps, loss="-")  # fmt: skip
            batch = None if batch is None else batch.to(policy.device)
            data_order = torch.Generator().manual_seed(config.seed)
            # another process draws its own samples (its rank is a stream of its own); rank 0 draws as if alone
            streams = (index, distributed.rank()) if distributed.rank() else (index,)
            rule.setup(policy, world, seed_generators(config.seed, policy.seeds, *streams))
            batch = rule.prepare(policy, batch)
            stepper = _stepper(policy, rule)
            optimizer = OPTIMIZERS[config.optimizer](
                [*policy.parameters(), *rule.parameters()], lr=stage.lr or config.lr, weight_decay=config.weight_decay
            )
            held = _policies_run(policy, rule)  # whose token passes a step spends (the policy, its references)
            # a budgeted stage trains until it has spent its even share, at most BUDGET_STEP_CAP times its steps
            share = config.budget_amount / len(stages) if budgeted else None
            cap = stage.steps * BUDGET_STEP_CAP if budgeted else stage.steps
            step, spent = 0, 0.0
            while step < cap and (share is None or spent < share):
                if snapshot is not None:
                    snapshot(Snapshot(done, index, step, policy, optimizer, rule))
                tokens, started = sum(p.token_passes for p in held), time.perf_counter()
                minibatch = distributed.shard(_minibatch(batch, config.batch_size, data_order))
                optimizer.zero_grad(set_to_none=True)
                loss, metrics = _accumulated_step(rule, stepper, policy, minibatch, step, config.grad_accum)
                mean_loss = distributed.sum_over_processes(loss)
                if not torch.isfinite(mean_loss).all():
                    bad = [policy.seeds[k] for k in torch.nonzero(~torch.isfinite(mean_loss)).flatten().tolist()]
                    raise TrainingDiverged(
                        f"training diverged: the loss of rule {rule.name!r} (stage {index + 1} of {len(stages)}) is "
                        f"not finite at step {done + 1} of {total} for seed(s) {', '.join(map(str, bad))}; lower the "
                        f"learning rate (it was {stage.lr or config.lr:g})"
                    )
                optimizer.step()
                rule.after_step(policy)
                cost = _spent(sum(p.token_passes for p in held) - tokens, time.perf_counter() - started)
                compute["tokens"] += cost["tokens"]
                compute["seconds"] += cost["seconds"]
                if budgeted and cost[config.budget] <= 0:
                    raise ValueError(f"budget={config.budget!r}: a step of rule {rule.name!r} spent no token passes: "
                                     f"the policy ({type(policy).__name__}) does not count them (Policy.seed_inputs); "
                                     "expected a budget of steps or seconds for it")  # fmt: skip
                spent += cost[config.budget] if budgeted else 0.0
                step += 1
                values = metrics
                if distributed.world_size() > 1 and values:  # one exchange for all the metrics (weighted shares)
                    shapes = {key: value.shape for key, value in values.items()}
                    summed = distributed.sum_over_processes(torch.stack(torch.broadcast_tensors(*values.values())))
                    values = {key: row if shapes[key] else row.mean() for key, row in zip(values, summed.unbind())}
                arrays = {key: value.cpu().numpy() for key, value in values.items()}
                for key, array in arrays.items():
                    history.setdefault(key, []).append(array)
                done += 1
                if log is not None:
                    log({"step": done, "stage": index + 1, "rule": rule.name,
                         **{key: array.tolist() for key, array in arrays.items()}})  # fmt: skip
                if callback is not None and config.eval_every and done % config.eval_every == 0:
                    evaluations.append((done, callback(done, policy)))
                progress.update(task, advance=1, loss=f"{float(mean_loss.mean()):.4f}")
            compute["capped"] = compute["capped"] or (share is not None and spent < share)
    if snapshot is not None:
        snapshot(Snapshot(done, len(stages) - 1, step, policy, optimizer, rule))
    if callback is not None and (not evaluations or evaluations[-1][0] != done):
        evaluations.append((done, callback(done, policy)))
    stacked = {key: np.stack(values) for key, values in history.items()}
    compute["steps"] = done
    return TrainResult(policy, stacked, evaluations, time.perf_counter() - start, [s.spec() for s in stages],
                       compute)  # fmt: skip


def _policies_run(policy: Policy, rule: Rule) -> list[Policy]:
    """The policy and every other policy the rule holds (its frozen reference, a rule inside it: CHORD's GRPO), whose
    forward passes a step spends."""
    found: dict[int, Policy] = {id(policy): policy}
    rules, seen = [rule], set()
    while rules:
        current = rules.pop()
        seen.add(id(current))
        for value in vars(current).values():
            if isinstance(value, Policy):
                found.setdefault(id(value), value)
            elif isinstance(value, Rule) and id(value) not in seen:
                rules.append(value)
    return list(found.values())


def _spent(tokens: int, seconds: float) -> dict[str, float]:
    """A step's token passes and seconds, over every process (the same numbers on each, so that a budgeted loop stops
    at the same step everywhere: token passes summed, seconds averaged)."""
    if distributed.world_size() == 1:
        return {"tokens": float(tokens), "seconds": seconds}
    summed = distributed.sum_over_processes(torch.tensor([float(tokens), seconds], dtype=torch.float64))
    return {"tokens": float(summed[0]), "seconds": float(summed[1]) / distributed.world_size()}
