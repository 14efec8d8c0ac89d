"""Training for the explorers: every rule on one Frozen Lake map, with the policy kept at regular steps so that a
scrubber can show how each rule's policy moves, and, for the rules asked, the update field of the step training takes
at chosen steps (the update view)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from iftgym.experiments.compare import (
    BOUNDS,
    NO_SECOND_ROUTE,
    CompareConfig,
    in_worker,
    make_policy,
    math_threads,
    score,
)
from iftgym.experiments.runner import run_algorithm
from iftgym.metrics.stats import summarize
from iftgym.metrics.update import UpdateField, UpdateRecorder
from iftgym.parallel import Task, WorkerPool, in_background
from iftgym.policies.base import Policy
from iftgym.registry import load_plugin
from iftgym.rules.registry import recipe_rules
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP


@dataclass
class RuleRun:
    """One rule trained on all seeds: its policy matrices ``(n, K, S, A)`` at ``steps`` (step 0 is the start), its
    training curves (``AlgorithmResult.curves``: MSE and success per seed at each kept step), the final metrics per
    seed and their summaries, or why it was skipped; ``fields``: the update fields of the steps
    training took at the steps asked (:class:`~iftgym.metrics.update.UpdateRecorder`), or ``fields_skipped``: why
    the rule or policy gives none."""

    steps: list[int] = field(default_factory=list)
    snapshots: np.ndarray | None = None
    curves: dict[str, list] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: str | None = None
    seconds: float = 0.0
    fields: dict[int, UpdateField] = field(default_factory=dict)
    fields_skipped: str | None = None

    def at(self, step: int) -> np.ndarray:
        """The policy matrices ``(K, S, A)`` at the last kept step not after ``step``."""
        index = max(i for i, s in enumerate(self.steps) if s <= step) if step >= 0 else 0
        return self.snapshots[index]


def train_rules(
    model: FrozenLakeMDP,
    config: CompareConfig,
    every: int = 10,
    cache: dict[str, RuleRun] | None = None,
    pool: WorkerPool | None = None,
    fields: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, RuleRun]:
    """Train each algorithm of ``config`` on ``model`` (a Markov policy: its matrix is kept every ``every`` steps),
    scored exactly at the end as :func:`~iftgym.experiments.compare.compare` scores it. With a ``cache`` (a dict
    kept between calls), an algorithm whose map, dynamics and settings — its own rules' hyper-parameters included,
    the other rules' not — did not change is not trained again: its run is the same. With a ``pool`` (kept alive
    between calls), the algorithms train in its workers and in this process at once, each with ``config.threads``
    math threads; a rule registered by the caller's own code trains here. ``fields``: ``{algo: steps}``, the algorithms
    whose update fields to record at those steps (a run with fields is cached apart from one without)."""
    fields = fields or {}
    runs: dict[str, RuleRun] = {}
    keys = {algo: _run_key(model, config, algo, fields.get(algo, ())) for algo in config.algos}
    todo = [algo for algo in config.algos if cache is None or keys[algo] not in cache]
    rows = tuple(model.desc)
    tasks: dict[str, Task] = {algo: (train_rule, (rows, config, algo, every, fields.get(algo, ()))) for algo in todo
                              if in_worker(algo, config.plugins)}  # fmt: skip
    with math_threads(config.threads), in_background(tasks, 0 if pool is None else None, pool) as result:
        for algo in config.algos:
            if algo not in todo:
                runs[algo] = cache[keys[algo]]
                continue
            runs[algo] = result(algo) if algo in tasks else train_rule(rows, config, algo, every, fields.get(algo, ()))
            if cache is not None:
                cache[keys[algo]] = runs[algo]
    return runs


def train_rule(
    rows: tuple[str, ...], config: CompareConfig, algo: str, every: int, field_steps: tuple[int, ...] = ()
) -> RuleRun:
    """One algorithm of ``config`` on the map ``rows`` (with ``config``'s dynamics), its policy matrices kept every
    ``every`` steps and its update fields recorded at ``field_steps`` (a top-level function: it runs in a worker
    process too, which loads ``config.plugins`` first)."""
    for plugin in config.plugins:
        load_plugin(plugin)
    start = time.perf_counter()
    model = FrozenLakeMDP.from_map(list(rows), config.slippery, config.success_rate, config.gamma)
    data = model.training_data(config.demos)
    kept: dict[int, np.ndarray] = {}

    def starting_policy() -> Policy:
        policy = make_policy(model, config, list(range(config.seeds)))
        kept[0] = policy.action_probs().double().numpy()
        return policy

    def keep(step: int, p: Policy) -> dict[str, np.ndarray]:
        kept[step] = p.action_probs().double().numpy()
        return {}  # nothing to record: the snapshots are the record

    recorder = UpdateRecorder(model, data, field_steps, seed=config.seed) if field_steps else None
    run = run_algorithm(algo, config.stages(algo), model, data, starting_policy,
                        config.train_config(eval_every=every), callback=keep,
                        no_pairs=NO_SECOND_ROUTE, snapshot=recorder)  # fmt: skip
    if run.skipped is not None:
        return RuleRun(skipped=run.skipped)
    kept[config.steps] = run.policy.action_probs().double().numpy()
    metrics = score(model, kept[config.steps], data)
    steps = sorted(kept)
    snapshots = np.stack([kept[s] for s in steps])
    curves = model.scores(snapshots.reshape(-1, *snapshots.shape[2:]), ("mse", "success"))  # here: in the worker
    return RuleRun(
        steps=steps, snapshots=snapshots, metrics=metrics,
        curves={"steps": steps, **{k: v.reshape(len(steps), -1).T.tolist() for k, v in curves.items()}},
        summary={k: summarize(v, BOUNDS.get(k)) for k, v in metrics.items()}, seconds=time.perf_counter() - start,
        fields=recorder.fields if recorder else {}, fields_skipped=recorder.skipped if recorder else None,
    )  # fmt: skip


def _run_key(model: FrozenLakeMDP, config: CompareConfig, algo: str, field_steps: tuple[int, ...] = ()) -> str:
    """Everything one algorithm's run depends on, as text."""
    rules = recipe_rules(algo)
    settings = {**asdict(config), "algos": [algo], "maps": list(model.desc),
                "rule_overrides": {k: v for k, v in config.rule_overrides.items() if k in rules},
                "stage_lrs": {k: v for k, v in config.stage_lrs.items() if k in rules},
                "fields": list(field_steps)}  # fmt: skip
    return json.dumps(settings, sort_keys=True, default=str)
