"""The comparison in a world other than Frozen Lake: the token world and any registered plugin world get the same
rows, reference rows, paired statistics, curves, history and ``results.json`` as the grid.

A world kind says what a comparison needs beyond the World contract: how its policy is built, which metrics it
reports and which way each is better, its reference rows and what else an algorithm's entry carries. :class:`Tokens`
is the token world's (TinyGPT or a Hugging Face model; exact match greedy and sampled, and the exact probability of
the target answer, on training and held-out prompts; preference strips; with ``update_maps`` each algorithm's update
strips, :class:`iftgym.metrics.update_tokens.TokenUpdateRecorder`); :class:`PluginWorld` any other world's (a
policy kind from the registry on its ids; the world's own ``scores``; which metrics are lower-is-better from the
world's optional ``lower_is_better`` mapping).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iftgym import distributed
from iftgym.experiments import runner
from iftgym.experiments.config import TOKENS, CompareConfig
from iftgym.experiments.paired import flag_worse_than_untrained, paired_statistics, scored
from iftgym.experiments.results import AlgorithmResult, CompareResult, Metric, Skipped, WorldResult
from iftgym.io import read_json
from iftgym.loop import StepLog
from iftgym.metrics.estimators import ift_estimate, on_policy_exact, teacher_forced
from iftgym.metrics.update import training_points
from iftgym.metrics.update_tokens import TokenUpdateRecorder
from iftgym.policies.base import Policy, resolve_device
from iftgym.policies.folder import model_folder, save_model
from iftgym.policies.registry import build_policy
from iftgym.policies.tabular import TabularPolicy
from iftgym.rules.ift import IFTConfig
from iftgym.types import TrainingData
from iftgym.world import World
from iftgym.worlds.registry import make_world
from iftgym.worlds.tokens.tasks import Example
from iftgym.worlds.tokens.tokenizer import prompt_text
from iftgym.worlds.tokens.world import SCORES, TokenWorld

TOKEN_METRICS = {  # name: (label, lower is better)
    "target_test": ("P(target) held-out", False),
    "greedy_test": ("greedy held-out", False),
    "sampled_test": ("sampled held-out", False),
    "target_train": ("P(target) train", False),
    "greedy_train": ("greedy train", False),
}
TOKEN_PAIRED = ("target_test", "greedy_test", "sampled_test", "target_train")


class PluginWorld:
    """A registered world of the user's, through the World contract alone."""

    def __init__(self, config: CompareConfig) -> None:
        self.config = config
        self.world: World = make_world(config.world, **config.world_args)
        self.name = config.world
        lower = getattr(self.world, "lower_is_better", {}) or {}
        self.lower_is_better: dict[str, bool] = {str(k): bool(v) for k, v in dict(lower).items()}

    def policy(self, seeds: list[int]) -> Policy:
        """K seeds of the configured policy kind on the world's ids."""
        return build_policy(self.config.policy, self.world.n_ids, self.world.n_actions, seeds,
                            hidden=self.config.hidden)  # fmt: skip

    def scores(self, policy: Any) -> dict[str, np.ndarray]:
        """The world's own measures, checked: each ``(K,)`` and numeric."""
        scores = self.world.scores(policy)
        k = policy.n_seeds
        if not isinstance(scores, dict) or not scores:
            raise ValueError(f"world {self.name!r} breaks the World contract: scores returned {type(scores).__name__}, "
                             "expected a non-empty dict of (K,) arrays")  # fmt: skip
        if "steps" in scores:
            raise ValueError(f"world {self.name!r}: a score may not be named 'steps' (the curves' step axis): "
                             "rename it")  # fmt: skip
        out = {}
        for key, value in scores.items():
            array = np.asarray(value, dtype=float) if _numeric(value) else None
            if array is None or array.shape != (k,):
                raise ValueError(f"world {self.name!r} breaks the World contract: scores[{str(key)[:40]!r}] is not a "
                                 f"({k},) array of numbers")  # fmt: skip
            out[str(key)] = array
        return out

    def evaluate(self, policy: Policy) -> dict[str, np.ndarray]:
        """What the curves show: every score."""
        return self.scores(policy)

    def metrics(self, names: Sequence[str]) -> dict[str, Metric]:
        """Each metric's label and direction (higher is better unless the world says otherwise)."""
        return {name: Metric(name, self.lower_is_better.get(name, False)) for name in names}

    def strips(self, run: runner.AlgorithmRun) -> None:
        """No preference strips: a plugin world's steps have no tokens to label."""
        return None

    def info(self) -> dict[str, Any]:
        """What the entry says about the world."""
        return {"world": {"name": self.name, "n_ids": self.world.n_ids, "n_actions": self.world.n_actions}}


def _numeric(value: Any) -> bool:
    try:
        return np.asarray(value).dtype.kind in "biuf"
    except (TypeError, ValueError):
        return False


class Tokens:
    """The token world: its task with its tokenizer, TinyGPT or a Hugging Face model."""

    def __init__(self, config: CompareConfig) -> None:
        self.config = config
        vocab = None  # a model's vocabulary larger than the tokenizer's widens the world's ids
        if config.pretrained is not None:
            vocab = read_json(Path(config.pretrained) / "config.json", "model config").get("vocab_size")
        elif config.model_config is not None:
            vocab = config.model_config.get("vocab_size")

        def build(vocab_size: int | None) -> TokenWorld:
            return make_world(TOKENS, task=config.task, data=config.data, task_args=config.task_args,
                              n_train=config.n_train, n_test=config.n_test,
                              tokenizer=config.tokenizer or config.pretrained, reward=config.reward,
                              vocab_size=vocab_size)  # fmt: skip

        self.world = build(None)
        if isinstance(vocab, int) and vocab > self.world.n_ids:
            self.world = build(vocab)
        self.name = config.task
        self.lower_is_better = {name: lower for name, (_, lower) in TOKEN_METRICS.items()}
        self.device = str(distributed.local_device(resolve_device(config.device)))

    def policy(self, seeds: list[int]) -> Policy:
        """K seeds of TinyGPT, or of the Hugging Face model, whose vocabulary and context must hold the world's."""
        world, config, tokenizer = self.world, self.config, self.world.tokenizer
        special = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
        policy = build_policy(config.policy, world.n_ids, world.n_actions, seeds, block_size=world.block_size,
                              n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd, device=self.device,
                              hidden=config.hidden, model_config=config.model_config, pretrained=config.pretrained,
                              special_ids=special)  # fmt: skip
        context = getattr(policy, "block_size", None)
        if policy.n_actions < world.tokenizer.vocab_size or (context is not None and context < world.block_size):
            raise ValueError(f"the model reads {policy.n_actions} token ids and {context} positions: the task needs "
                             f"{world.tokenizer.vocab_size} ids and {world.block_size} positions")  # fmt: skip
        return policy

    def scores(self, policy: Any) -> dict[str, np.ndarray]:
        """Exact match (greedy, sampled) and the exact probability of the target, held-out and train."""
        return self.world.scores(policy, SCORES, seed=self.config.seed)

    def evaluate(self, policy: Policy) -> dict[str, np.ndarray]:
        """What the curves show: greedy exact match and the probability of the target, held-out."""
        return self.world.scores(policy, ("greedy_test", "target_test"))

    def metrics(self, names: Sequence[str]) -> dict[str, Metric]:
        """Each metric's label and direction."""
        return {name: Metric(*TOKEN_METRICS[name]) for name in names}

    def strips(self, run: runner.AlgorithmRun) -> list[dict[str, Any]]:
        """The preference strips, with IFT's lambda read from the rule that trained (if one did)."""
        lam = run.setting("ift", "lam", IFTConfig.lam)
        return preference_strips(run.policy, self.world, self.world.task.test[: self.config.strips], lam)

    def info(self) -> dict[str, Any]:
        """The task's sizes and tokenizer."""
        world = self.world
        return {"task": {"name": self.config.task, "vocab_size": world.n_ids, "block_size": world.block_size,
                         "n_train": len(world.task.train), "n_test": len(world.task.test),
                         "tokenizer": type(world.tokenizer).__name__,
                         "chars": getattr(world.tokenizer, "chars", None)}}  # fmt: skip


def world_kind(config: CompareConfig) -> Tokens | PluginWorld:
    """The kind of ``config.world`` (Frozen Lake has its own path, :func:`iftgym.experiments.compare.compare`)."""
    return Tokens(config) if config.world == TOKENS else PluginWorld(config)


def preference_strips(policy: Policy, world: TokenWorld, examples: Sequence[Example], lam: float) -> list:
    """For each example, the three estimates at every answer position, ``(K, n)`` lists per estimate."""
    if not examples:
        return []
    batch = world.step_batch([(ex.prompt, ex.completion) for ex in examples])
    estimates = {
        "teacher_forced": teacher_forced(policy, world, batch),
        "ift": ift_estimate(policy, world, batch, lam),
        "on_policy": on_policy_exact(policy, world, batch, reach="path"),
    }
    strips = []
    for b, ex in enumerate(examples):
        steps = batch.mask[b].nonzero().squeeze(-1).numpy()
        tokens = [world.tokenizer.decode([i]) for i in world.answer_ids(ex.completion, ex.prompt)]
        strips.append({
            "prompt": prompt_text(ex.prompt), "answer": ex.completion, "tokens": tokens, "lam": lam,
            **{name: values[:, b, steps].tolist() for name, values in estimates.items()},
        })  # fmt: skip
    return strips


def first_examples(data: TrainingData, n: int) -> TrainingData:
    """The first ``n`` demonstrations and pairs of ``data``: the batch ``--update-maps`` takes each rule's next step on
    in the token world (a training step's size, the first training prompt, which its strips show, among them)."""

    def first(batch: Any) -> Any:
        return None if batch is None else batch.select(torch.arange(min(n, batch.size)))

    return TrainingData(first(data.demos), first(data.pairs))


def compare_world(
    config: CompareConfig,
    progress: Callable[[str], None],
    log: StepLog | None = None,
    save: str | None = None,
    bars: bool = False,
) -> CompareResult:
    """The comparison in ``config.world`` (not Frozen Lake): every algorithm through the one runner, scored by the
    world, the reference rows, paired statistics against the baseline; typed results of the same form as the
    grid's (one entry in ``maps``: the world). ``log`` receives every step's metrics, ``save`` is a folder that
    receives each trained model (``save/<algorithm>``; the token world), ``bars`` shows a progress bar per stage."""
    start = time.perf_counter()
    kind = world_kind(config)
    world, seeds = kind.world, list(range(config.seeds))
    data = world.training_data()
    untrained = kind.policy(seeds)  # the reference row, and the policy the world's samples are checked with
    runner.check_world_samples(world, untrained, config.world)
    stages = {algo: config.stages(algo) for algo in config.algos}
    # a plugin world without pairs skips the pair rules, as a map without a second route does; the token world has
    # every kind of data
    runner.check_batches(stages.values(), data, config.batch_size, config.grad_accum, config.world != TOKENS)
    bounds = {name: (0.0, 1.0) for name in TOKEN_METRICS} if config.world == TOKENS else {}
    entry = WorldResult(kind.name, {}, info=kind.info())
    strip_data = first_examples(data, config.batch_size) if config.update_maps else None
    loop = config.train_config(progress=bars)
    first = config.budget_baseline()  # with a budget of token passes or seconds: its spend is the others' budget
    amount = None
    for algo in sorted(config.algos, key=lambda name: name != first):
        progress(f"training {algo} on {kind.name} x{config.seeds} seeds")
        budgeted = loop if first is None or algo == first else replace(loop, budget_amount=amount)
        recorder = None if strip_data is None else TokenUpdateRecorder(world, strip_data, world.task.train[:1],
                                                                       training_points(config.steps),
                                                                       config.seed)  # fmt: skip
        run = runner.run_algorithm(algo, stages[algo], world, data, lambda: kind.policy(seeds), budgeted,
                                   callback=lambda step, p: kind.evaluate(p),
                                   log=None if log is None else lambda record, a=algo: log({"algorithm": a,
                                                                                            **record}),
                                   snapshot=recorder)  # fmt: skip
        if run.skipped is not None:
            entry.algorithms[algo] = Skipped(run.skipped)
            continue
        if algo == first:
            amount = run.compute[config.budget]
        if save is not None and distributed.is_main():
            save_model(run.policy, world.tokenizer, model_folder(save, algo), {"algorithm": algo,
                                                                               "config": asdict(config)})  # fmt: skip
        row = scored(kind.scores(run.policy), bounds)
        update = None if recorder is None else recorder.result()
        entry.algorithms[algo] = AlgorithmResult(
            row.per_seed, row.summary, run.wall_time - (update or {}).get("seconds", 0.0), run.stage_specs(),
            run.curves(), run.history_means(), strips=kind.strips(run), update=update, compute=run.compute,
        )  # fmt: skip
    entry.algorithms = {algo: entry.algorithms[algo] for algo in config.algos}  # the budget's baseline trained first
    references = {"uniform": TabularPolicy(world.n_ids, world.n_actions, seeds=seeds), "untrained": untrained}
    entry.references = {name: scored(kind.scores(actor), bounds) for name, actor in references.items()}
    measured = list(next(iter(entry.references.values())).per_seed)
    names = [name for name in TOKEN_METRICS if name in measured] if config.world == TOKENS else measured
    entry.metrics = kind.metrics(names)
    paired_names = TOKEN_PAIRED if config.world == TOKENS else tuple(names)
    entry.paired = paired_statistics([entry], config.baseline, entry.lower_is_better(), paired_names)
    flag_worse_than_untrained(entry, paired_names[0])
    device = kind.device if isinstance(kind, Tokens) else "cpu"
    return CompareResult(config.world, asdict(config), [entry], device=device, processes=distributed.world_size(),
                         wall_time=time.perf_counter() - start)  # fmt: skip
