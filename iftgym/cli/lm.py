"""``iftgym lm``: tiny GPTs trained on a token task with any rule; exact match, preference strips, results.json."""

from __future__ import annotations

import argparse

from rich.console import Console

from iftgym.cli.common import (
    add_training_arguments,
    key_values,
    load_plugins,
    parse_overrides,
    run_experiment,
    save_outputs,
    split_names,
    writable_dir,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym lm`` and its options."""
    lm = sub.add_parser("lm", help="train tiny GPTs on a token task with any rule: exact match, preference strips")
    lm.add_argument("--task", default=None,
                    help="addition, sort, frozen-lake, jsonl or a registered task (default: addition, or jsonl with "
                    "--data)")  # fmt: skip
    lm.add_argument("--algo", default="sft,ift",
                    help="comma-separated rules or recipes such as sft+dpo, sft+ppo (default: sft,ift)")  # fmt: skip
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
    lm.add_argument("--seed", type=int, default=0, help="seed of data order, rollouts and sampling (default: 0)")
    add_training_arguments(lm, "--algo")
    lm.add_argument("--out", default="runs/lm", help="output folder (default: runs/lm)")
    lm.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym lm`` with parsed ``args``, printing to ``console``."""
    from iftgym.experiments.lm import LMConfig, run_lm
    from iftgym.explain.strips import draw_lm_figures
    from iftgym.explain.tables import lm_table
    from iftgym.policies.base import resolve_device

    load_plugins(args.plugin)
    config = LMConfig(
        task=args.task or ("jsonl" if args.data else "addition"), algos=split_names(args.algo), steps=args.steps,
        seeds=args.seeds, lr=args.lr, batch_size=args.batch_size, n_layer=args.n_layer, n_head=args.n_head,
        n_embd=args.n_embd, device=args.device, data=args.data, n_train=args.train_size, n_test=args.test_size,
        task_args=key_values(args.task_arg, "--task-arg"), reward=args.reward, eval_every=args.eval_every,
        seed=args.seed, rule_overrides=parse_overrides(args.set),
        stage_lrs=key_values(args.stage_lr, "--stage-lr", "RULE=LR"),
    )  # fmt: skip
    resolve_device(config.device)
    out = writable_dir(args.out)
    results = run_experiment(console, run_lm, config)
    console.print(lm_table(results))
    save_outputs(console, out, lambda folder: draw_lm_figures(results, folder), results)
