"""``iftgym lm``: train tiny GPTs on a token task with any update rule, score them, explain their estimates.

For each algorithm, K seeds of :class:`TinyGPT` train at once through :func:`iftgym.train.train` (a chain such as
``sft+ppo`` trains its rules one after the other, each stage with its own learning rate if given), then are scored
on the task's train and test prompts: greedy and sampled exact match (or success rate, for Frozen Lake as text).
The per-token *preference strips* show, at each answer position n of a test example, three estimates of how much
the model prefers the target token:

* teacher-forced: ``pi(a*_n | s*_n)``, what SFT scores (the model conditioned on the true prefix);
* on-policy: ``T(s*_n) * pi(a*_n | s*_n) = prod_{i<=n} pi(a*_i | s*_i)``, the probability that the model's own
  rollout writes the target up to and including token n (exact: concatenation is deterministic);
* IFT estimate: ``pi(a*_n | mixed prefix)`` with IFT's temporal residual connection (lambda of the run, 0.2 by
  default).

Results go to ``results.json`` (written atomically) with ``curves.png`` and one ``strips_<algo>.png`` per algorithm.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from iftgym.explain.figures import save_figure
from iftgym.io import write_json
from iftgym.policies.tiny_gpt import TinyGPT, resolve_device
from iftgym.rules import RULES, make_rule
from iftgym.rules.base import Rule
from iftgym.rules.common import step_logps, step_logps_from_logits
from iftgym.rules.ift import IFT, IFTConfig
from iftgym.stats import summarize
from iftgym.token_tasks import TASKS, Example, Task, make_task
from iftgym.tokens import TokenWorld
from iftgym.train import TrainConfig, TrainResult, train
from iftgym.validate import at_least, non_negative

SCHEMA = "iftgym.lm/1"
ESTIMATES = ("teacher_forced", "ift", "on_policy")
ESTIMATE_LABELS = {"teacher_forced": "teacher-forced", "ift": "IFT estimate", "on_policy": "on-policy"}


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
            raise ValueError(f"unknown task {self.task!r}: expected one of {', '.join(TASKS)}")
        if (self.task == "jsonl") != (self.data is not None):
            raise ValueError("task 'jsonl' reads --data FILE.jsonl, and only it does: give both or neither")
        if not self.algos:
            raise ValueError("no algorithms given: expected rule names such as sft, ift, dpo")
        for name in ("steps", "seeds", "batch_size", "strips"):
            at_least(name, getattr(self, name), 1)
        non_negative("eval_every", self.eval_every)
        for algo in self.algos:
            if self.algos.count(algo) > 1:
                raise ValueError(f"algorithm {algo!r} is listed twice: its results would overwrite each other")
            stages = self.rules(algo)  # unknown algorithms or hyper-parameters fail before any training
            if self.steps < len(stages):
                raise ValueError(f"steps={self.steps} is out of range for {algo!r}: expected at least {len(stages)}, "
                                 "one step per stage")  # fmt: skip
        for name, lr in self.stage_lrs.items():
            if name not in RULES or isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ValueError(f"stage learning rate {name}={lr} is invalid: expected RULE=LR with LR > 0 and "
                                 f"RULE one of {', '.join(RULES)}")  # fmt: skip

    def rules(self, algo: str) -> list[Rule]:
        """The rules of one algorithm, trained one after the other (``"sft+ppo"``: SFT, then PPO)."""
        return [make_rule(part, **self.rule_overrides.get(part, {})) for part in algo.split("+")]

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
    batch = world.step_batch([(ex.prompt, ex.completion) for ex in examples]).to(policy.device)
    ift = IFT(IFTConfig(lam=lam))
    ift.setup(policy, world, torch.Generator().manual_seed(0))
    with torch.no_grad():
        teacher = step_logps(policy, batch)
        mixed = step_logps_from_logits(policy(ift.mixed_inputs(policy, batch, lam)), batch)
    estimates = {"teacher_forced": teacher.exp(), "ift": mixed.exp(), "on_policy": teacher.cumsum(-1).exp()}
    strips = []
    for b, ex in enumerate(examples):
        steps = batch.mask[b].nonzero().squeeze(-1)
        strips.append({
            "prompt": ex.prompt, "answer": ex.completion, "tokens": [*ex.completion, "<eos>"],
            **{name: values[:, b, steps].cpu().tolist() for name, values in estimates.items()},
        })  # fmt: skip
    return strips


def train_stages(config: LMConfig, algo: str, policy: TinyGPT, world: TokenWorld) -> TrainResult:
    """Train the rules of ``algo`` one after the other, splitting the steps evenly as :func:`train` does, each
    stage with its own learning rate; the evaluation curve tracks greedy test reward across all stages."""
    rules = config.rules(algo)
    bounds = np.linspace(0, config.steps, len(rules) + 1).round().astype(int)
    eval_every = config.eval_every or max(1, config.steps // 10)
    data = world.training_data()
    merged = TrainResult(policy, {})
    for rule, begin, end in zip(rules, bounds[:-1], bounds[1:]):
        if end == begin:
            continue
        stage = TrainConfig(steps=int(end - begin), lr=config.stage_lrs.get(rule.name, config.lr),
                            batch_size=config.batch_size, seed=config.seed, eval_every=eval_every)  # fmt: skip
        result = train(policy, rule, world, data, stage, lambda step, pol: {"greedy_test": world.score(pol, "test")})
        for key, values in result.history.items():
            merged.history[key] = np.concatenate([merged.history.get(key, values[:0]), values])
        merged.evaluations += [(int(begin) + step, scores) for step, scores in result.evaluations]
        merged.wall_time += result.wall_time
    return merged


def run_algorithm(config: LMConfig, algo: str, world: TokenWorld) -> dict[str, Any]:
    """Train K seeds with one algorithm and score them."""
    policy = TinyGPT(world.n_ids, world.block_size, config.n_layer, config.n_head, config.n_embd,
                     seeds=config.seeds, device=config.device)  # fmt: skip
    generator = torch.Generator().manual_seed(config.seed)
    result = train_stages(config, algo, policy, world)
    scores = {
        "greedy_test": world.score(policy, "test"),
        "sampled_test": world.score(policy, "test", greedy=False, generator=generator),
        "greedy_train": world.score(policy, "train"),
    }
    ift_lam = config.rule_overrides.get("ift", {}).get("lam", IFTConfig.lam)
    return {
        "scores": {key: values.tolist() for key, values in scores.items()},
        "summary": {key: summarize(values, (0.0, 1.0)) for key, values in scores.items()},
        "curve": {"steps": [s for s, _ in result.evaluations],
                  "greedy_test": [e["greedy_test"].tolist() for _, e in result.evaluations]},
        "history": {key: values.mean(-1).tolist() for key, values in result.history.items()},
        "strips": preference_strips(policy, world, world.task.test[: config.strips], ift_lam),
        "wall_time": result.wall_time,
    }  # fmt: skip


def run_lm(config: LMConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every algorithm of ``config`` on its task: the full results dictionary (see the module docstring)."""
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


# ---- figures ------------------------------------------------------------------------------------------------
def draw_strips(entry: dict[str, Any], algo: str, path: Path) -> Path:
    """One panel per example: the three estimates (mean over seeds) at each answer token, on one 0-1 scale."""
    strips = entry["strips"]
    width = max(len(s["tokens"]) for s in strips)
    fig = Figure(figsize=(1.2 + 0.55 * width, 1.3 * len(strips) + 0.6), layout="constrained")
    axes = fig.subplots(len(strips), 1, squeeze=False)[:, 0]
    for ax, strip in zip(axes, strips):
        values = np.array([np.mean(strip[name], axis=0) for name in ESTIMATES])
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.5 else "white")  # fmt: skip
        ax.set_yticks(range(len(ESTIMATES)), [ESTIMATE_LABELS[n] for n in ESTIMATES], fontsize=8)
        ax.set_xticks(range(len(strip["tokens"])), strip["tokens"], fontsize=8)
        ax.set_title(f"prompt {strip['prompt']!r}", fontsize=9, loc="left")
    fig.colorbar(image, ax=list(axes), label="probability of the target token", shrink=0.8)
    fig.suptitle(f"{algo}: per-token preference estimates (mean over seeds)", fontsize=10)
    return save_figure(fig, path)


def draw_curves(results: dict[str, Any], path: Path) -> Path:
    """Training loss and greedy test exact match against steps, one line per algorithm (means over seeds)."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    loss_ax, score_ax = fig.subplots(1, 2)
    for algo, entry in results["algorithms"].items():
        if "loss" in entry["history"]:
            loss_ax.plot(np.arange(1, len(entry["history"]["loss"]) + 1), entry["history"]["loss"], label=algo)
        curve = entry["curve"]
        score_ax.plot(curve["steps"], np.mean(curve["greedy_test"], axis=1), marker="o", label=algo)
    loss_ax.set(xlabel="step", ylabel="loss (mean over seeds)", title="training loss")
    score_ax.set(xlabel="step", ylabel="greedy test reward", title=f"{results['task']['name']}: exact match / success",
                 ylim=(-0.02, 1.02))  # fmt: skip
    for ax in (loss_ax, score_ax):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def draw_lm_figures(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    paths = [draw_curves(results, out / "curves.png")]
    for algo, entry in results["algorithms"].items():
        paths.append(draw_strips(entry, algo, out / f"strips_{algo.replace('+', '_then_')}.png"))
    return paths


# ---- command line ---------------------------------------------------------------------------------------------
def results_table(results: dict[str, Any]) -> Table:
    task = results["task"]
    table = Table(title=f"{task['name']} ({task['n_train']} train / {task['n_test']} test prompts): "
                  f"mean [95% CI] over {results['config']['seeds']} seeds")  # fmt: skip
    table.add_column("algorithm")
    for label in ("greedy test", "sampled test", "greedy train", "wall s"):
        table.add_column(label, justify="right")
    for algo, entry in results["algorithms"].items():
        cells = [f"{s['mean']:.3f} [{s['ci95_low']:.3f}, {s['ci95_high']:.3f}]"
                 for s in (entry["summary"][k] for k in ("greedy_test", "sampled_test", "greedy_train"))]  # fmt: skip
        table.add_row(algo, *cells, f"{entry['wall_time']:.1f}")
    return table


def _json_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    values = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r} is malformed: expected KEY=VALUE")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def cmd_lm(args: argparse.Namespace, console: Console) -> None:
    """Train and evaluate tiny GPTs on a token task; print the table, write results.json and the figures."""
    from iftgym.cli import parse_overrides, writable_dir  # imported here: the cli imports this module

    config = LMConfig(
        task=args.task or ("jsonl" if args.data else "addition"),
        algos=[a.strip() for a in args.algo.split(",") if a.strip()], steps=args.steps, seeds=args.seeds,
        lr=args.lr, batch_size=args.batch_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
        device=args.device, data=args.data, n_train=args.train_size, n_test=args.test_size,
        task_args=_json_values(args.task_arg, "--task-arg"), reward=args.reward, eval_every=args.eval_every,
        seed=args.seed, rule_overrides=parse_overrides(args.set), stage_lrs=_json_values(args.stage_lr, "--stage-lr"),
    )  # fmt: skip
    resolve_device(config.device)
    out = writable_dir(args.out)
    with console.status("training") as status:
        results = run_lm(config, progress=lambda text: status.update(f"training {text}"))
    console.print(results_table(results))
    write_json(results, out / "results.json")
    figures = draw_lm_figures(results, out)
    console.print(f"wrote {out / 'results.json'} and {len(figures)} figures in {out}/")


def add_lm_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym lm`` on the CLI's sub-command parsers."""
    lm = sub.add_parser("lm", help="train tiny GPTs on a token task with any rule: exact match, preference strips")
    lm.add_argument("--task", default=None,
                    help=f"one of {', '.join(TASKS)} (default: addition, or jsonl with --data)")  # fmt: skip
    lm.add_argument("--algo", default="sft,ift",
                    help="comma-separated rules or chains such as sft+dpo, sft+ppo (default: sft,ift)")  # fmt: skip
    lm.add_argument("--steps", type=int, default=1500, help="optimiser steps per algorithm (default: 1500)")
    lm.add_argument("--seeds", type=int, default=3, help="seeds per algorithm, trained batched (default: 3)")
    lm.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: 0.003)")
    lm.add_argument("--batch-size", type=int, default=64, help="sequences or pairs per step (default: 64)")
    lm.add_argument("--n-layer", type=int, default=2, help="transformer blocks (default: 2)")
    lm.add_argument("--n-head", type=int, default=4, help="attention heads (default: 4)")
    lm.add_argument("--n-embd", type=int, default=64, help="model width (default: 64)")
    lm.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda (default: auto)")
    lm.add_argument("--data", default=None, help="JSONL file in TRL's prompt/completion or prompt/chosen/rejected "
                    "format, or the name of a shipped sample (reverse, reverse_preference)")  # fmt: skip
    lm.add_argument("--train-size", type=int, default=None, help="training prompts of a generated task")
    lm.add_argument("--test-size", type=int, default=None, help="held-out prompts of a generated task")
    lm.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="a task option, e.g. --task-arg digits=2 or --task-arg size=4 (repeatable)")  # fmt: skip
    lm.add_argument("--reward", default="end", help="end (task reward at the end) or token (per-token prefix match)")
    lm.add_argument("--eval-every", type=int, default=0, help="steps between test evaluations (0: steps // 10)")
    lm.add_argument("--seed", type=int, default=0, help="seed of data sampling and rollouts (default: 0)")
    lm.add_argument("--set", action="append", default=[], metavar="RULE.PARAM=VALUE",
                    help="a rule hyper-parameter, e.g. --set ift.lam=0.3 or --set ppo.kl_coef=0.05")  # fmt: skip
    lm.add_argument(
        "--stage-lr",
        action="append",
        default=[],
        metavar="RULE=LR",
        help="learning rate of one rule's stage, e.g. --stage-lr ppo=1e-4 (repeatable; default --lr)",
    )
    lm.add_argument("--out", default="runs/lm", help="output folder (default: runs/lm)")
    lm.set_defaults(func=cmd_lm)
