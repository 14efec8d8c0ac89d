"""Tiny GPTs on a token task: train K seeds with every algorithm, score them, explain their estimates.

For each algorithm, K seeds of :class:`TinyGPT` train at once through :func:`iftgym.train` (a recipe such as
``sft+ppo`` trains its rules one after the other, each stage with its own learning rate if given), then are scored
on the task's train and test prompts: greedy and sampled exact match (or success rate, for Frozen Lake as text).
The per-token *preference strips* show, at each answer position n of a test example, three estimates of how much
the model prefers the target token (:mod:`iftgym.metrics.estimators`):

* teacher-forced: ``pi(a*_n | s*_n)``, what SFT scores (the model conditioned on the true prefix);
* on-policy: ``T(s*_n) * pi(a*_n | s*_n) = prod_{i<=n} pi(a*_i | s*_i)``, the probability that the model's own
  rollout writes the target up to and including token n (exact: concatenation is deterministic);
* IFT estimate: ``pi(a*_n | mixed prefix)`` with IFT's temporal residual connection (lambda of the run, 0.2 by
  default).

:func:`run_lm` returns the results as a JSON-ready dict and prints nothing; ``iftgym lm`` renders them and draws
:mod:`iftgym.explain.strips`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from iftgym.loop import TrainConfig, check_algorithms, make_stages, train
from iftgym.metrics.estimators import ift_estimate, on_policy_exact, teacher_forced
from iftgym.metrics.stats import summarize
from iftgym.policies.base import MAX_SEEDS, resolve_device
from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.rules.ift import IFTConfig
from iftgym.validate import at_least, positive
from iftgym.worlds.tokens.tasks import TASKS, Example, Task, make_task
from iftgym.worlds.tokens.world import SCORES, TokenWorld

SCHEMA = "iftgym.lm/1"
ESTIMATES = ("teacher_forced", "ift", "on_policy")


@dataclass
class LMConfig:
    """Everything that defines an ``iftgym lm`` run; saved in ``results.json`` so the run can be repeated.

    ``task_args`` go to the task's constructor (``{"digits": 2}``), ``n_train``/``n_test`` too when set;
    ``rule_overrides`` set rule hyper-parameters by rule name (``{"ift": {"lam": 0.3}}``); ``stage_lrs`` the
    learning rate of a rule's stage by rule name (``{"ppo": 1e-4}`` for ``sft+ppo``; default ``lr``), since
    preference and RL stages need much smaller steps than SFT; ``eval_every`` 0 means ``steps // 10``.
    """

    task: str = "addition"
    algos: list[str] = field(default_factory=lambda: ["sft", "ift"])
    steps: int = 1500
    seeds: int = 3
    lr: float = 3e-3
    batch_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    device: str = "auto"
    data: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    task_args: dict[str, Any] = field(default_factory=dict)
    reward: str = "end"
    eval_every: int = 0
    strips: int = 3
    seed: int = 0
    rule_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_lrs: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: expected one of {', '.join(TASKS.names())}")
        if (self.task == "jsonl") != (self.data is not None):
            raise ValueError("task 'jsonl' reads --data FILE.jsonl, and only it does: give both or neither")
        for name in ("steps", "batch_size", "strips"):
            at_least(name, getattr(self, name), 1)
        at_least("seeds", self.seeds, 1, high=MAX_SEEDS)
        positive("lr", self.lr)
        resolve_device(self.device)
        at_least("eval_every", self.eval_every, 0)
        at_least("seed", self.seed, 0)
        check_algorithms(self.algos, self.steps, self.stage_lrs, self.rule_overrides)

    def make_task(self) -> Task:
        """The task, built from ``task``, ``data``, ``task_args``, ``n_train`` and ``n_test``."""
        kwargs = dict(self.task_args)
        if self.task == "jsonl":
            kwargs["path"] = self.data
        for key in ("n_train", "n_test"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        return make_task(self.task, **kwargs)


def preference_strips(policy: TinyGPT, world: TokenWorld, examples: Sequence[Example], lam: float = 0.2) -> list:
    """For each example, the three estimates at every answer position, ``(K, n)`` lists per estimate."""
    batch = world.step_batch([(ex.prompt, ex.completion) for ex in examples])
    estimates = {
        "teacher_forced": teacher_forced(policy, world, batch),
        "ift": ift_estimate(policy, world, batch, lam),
        "on_policy": on_policy_exact(policy, world, batch, reach="path"),
    }
    strips = []
    for b, ex in enumerate(examples):
        steps = batch.mask[b].nonzero().squeeze(-1).numpy()
        strips.append({
            "prompt": ex.prompt, "answer": ex.completion, "tokens": [*ex.completion, "<eos>"],
            **{name: values[:, b, steps].tolist() for name, values in estimates.items()},
        })  # fmt: skip
    return strips


def run_algorithm(config: LMConfig, algo: str, world: TokenWorld) -> dict[str, Any]:
    """Train K seeds with one algorithm and score them."""
    policy = TinyGPT(world.n_ids, world.block_size, config.n_layer, config.n_head, config.n_embd,
                     seeds=config.seeds, device=config.device)  # fmt: skip
    stages = make_stages(algo, config.steps, config.stage_lrs, config.rule_overrides)
    loop = TrainConfig(steps=config.steps, lr=config.lr, batch_size=config.batch_size, seed=config.seed,
                       eval_every=config.eval_every or max(1, config.steps // 10))  # fmt: skip
    result = train(policy, stages, world, world.training_data(), loop,
                   callback=lambda step, p: world.scores(p, ("greedy_test",)))  # fmt: skip
    scores = world.scores(policy, SCORES, seed=config.seed)
    ift_lam = config.rule_overrides.get("ift", {}).get("lam", IFTConfig.lam)
    return {
        "stages": result.stages,
        "scores": {key: values.tolist() for key, values in scores.items()},
        "summary": {key: summarize(values, (0.0, 1.0)) for key, values in scores.items()},
        "curve": {"steps": [s for s, _ in result.evaluations],
                  "greedy_test": [e["greedy_test"].tolist() for _, e in result.evaluations]},
        "history": {key: values.mean(-1).tolist() for key, values in result.history.items()},
        "strips": preference_strips(policy, world, world.task.test[: config.strips], ift_lam),
        "wall_time": result.wall_time,
    }  # fmt: skip


def run_lm(config: LMConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every algorithm of ``config`` on its task: the full results dictionary (see the module docstring);
    ``progress`` is called with a short description before each algorithm."""
    start = time.perf_counter()
    world = TokenWorld(config.make_task(), reward=config.reward)
    device = resolve_device(config.device)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "config": asdict(config),
        "device": str(device),
        "task": {"name": config.task, "vocab_size": world.n_ids, "block_size": world.block_size,
                 "n_train": len(world.task.train), "n_test": len(world.task.test), "chars": world.tokenizer.chars},
        "algorithms": {},
    }  # fmt: skip
    for algo in config.algos:
        if progress is not None:
            progress(f"{algo} on {config.task} x{config.seeds} seeds")
        results["algorithms"][algo] = run_algorithm(config, algo, world)
    results["wall_time"] = time.perf_counter() - start
    return results
