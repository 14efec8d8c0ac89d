"""``iftgym lm``: language models (TinyGPT or Hugging Face) trained on a token task with any rule; exact match,
preference strips, results.json, a live metrics log and, with ``--save``, the trained models. Under
``torchrun --nproc_per_node=N -m iftgym lm ...`` the processes share every minibatch (rank 0 writes)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from iftgym.cli.common import (
    add_training_arguments,
    key_values,
    load_plugins,
    parse_overrides,
    quiet_hugging_face,
    save_outputs,
    split_names,
    writable_dir,
)

LOG = "metrics.jsonl"  # every step's metrics, among the outputs of a finished run
LIVE_LOG = "metrics.live.jsonl"  # the same, written as training goes: what a failed or killed run measured


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym lm`` and its options."""
    lm = sub.add_parser("lm", help="train language models on a token task with any rule: exact match, preference "
                        "strips, saved models")  # fmt: skip
    lm.add_argument("--task", default=None,
                    help="addition, sort, frozen-lake, jsonl or a registered task (default: addition, or jsonl with "
                    "--data)")  # fmt: skip
    lm.add_argument("--algo", default="sft,ift",
                    help="comma-separated rules or recipes such as sft+dpo, sft+ppo (default: sft,ift)")  # fmt: skip
    lm.add_argument("--steps", type=int, default=1500, help="optimiser steps per algorithm (default: 1500)")
    lm.add_argument("--seeds", type=int, default=3, help="seeds per algorithm, trained batched (default: 3)")
    lm.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: 0.003)")
    lm.add_argument("--batch-size", type=int, default=64, help="sequences or pairs per step (default: 64)")
    lm.add_argument("--n-layer", type=int, default=None, help="TinyGPT's transformer blocks (default: 2)")
    lm.add_argument("--n-head", type=int, default=None, help="TinyGPT's attention heads (default: 4)")
    lm.add_argument("--n-embd", type=int, default=None, help="TinyGPT's width (default: 64)")
    lm.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda (default: auto)")
    lm.add_argument("--data", default=None, help="JSONL file in a TRL format (prompt/completion, prompt/chosen/"
                    "rejected, conversational, messages), or a shipped sample (reverse, reverse_preference, "
                    "chat)")  # fmt: skip
    lm.add_argument("--model-config", default=None, metavar="FILE.json",
                    help="train a Hugging Face causal LM built from this config (a JSON object with model_type, "
                    "e.g. gpt2) instead of TinyGPT")  # fmt: skip
    lm.add_argument(
        "--pretrained",
        default=None,
        metavar="DIR",
        help="train a Hugging Face model read from this local folder (save_pretrained format)",
    )
    lm.add_argument(
        "--tokenizer",
        default=None,
        metavar="DIR",
        help="a saved tokenizer folder (default: the pretrained folder's, else characters)",
    )
    lm.add_argument(
        "--save",
        default=None,
        metavar="DIR",
        help="write each trained model with its tokenizer into DIR/<algorithm> (its name made safe: sft+dpo -> "
        "sft-dpo; safetensors)",
    )
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
    from iftgym import distributed
    from iftgym.experiments.lm import TINY_GPT_SHAPE, LMConfig, run_lm
    from iftgym.explain.strips import draw_lm_figures
    from iftgym.explain.tables import lm_table
    from iftgym.policies.base import resolve_device
    from iftgym.policies.folder import check_model_destination, model_folder

    quiet_hugging_face()
    load_plugins(args.plugin)
    shape = {name: getattr(args, name) for name in TINY_GPT_SHAPE if getattr(args, name) is not None}
    model = "--model-config" if args.model_config is not None else "--pretrained" if args.pretrained else None
    if shape and model is not None:  # TinyGPT's shape: it would be ignored
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in shape)
        verb = "has" if len(shape) == 1 else "have"
        raise ValueError(f"{flags} {verb} no effect with {model}: the Hugging Face model's config sets its shape; "
                         "drop the flag or set the size in the model's config")  # fmt: skip
    config = LMConfig(
        task=args.task or ("jsonl" if args.data else "addition"), algos=split_names(args.algo), steps=args.steps,
        seeds=args.seeds, lr=args.lr, batch_size=args.batch_size, **shape,
        device=args.device, data=args.data, n_train=args.train_size, n_test=args.test_size,
        task_args=key_values(args.task_arg, "--task-arg"), reward=args.reward, eval_every=args.eval_every,
        seed=args.seed, rule_overrides=parse_overrides(args.set),
        stage_lrs=key_values(args.stage_lr, "--stage-lr", "RULE=LR"), model_config=args.model_config,
        pretrained=args.pretrained, tokenizer=args.tokenizer,
    )  # fmt: skip
    out = writable_dir(args.out)
    if args.save is not None:
        writable_dir(args.save)
        for algo in config.algos:
            check_model_destination(model_folder(args.save, algo))
    distributed.init_from_environment(resolve_device(config.device))
    main = distributed.is_main()
    args.live_log = out / LIVE_LOG
    results = run_lm(config, progress=lambda text: console.print(escape(text)) if main else None, save=args.save,
                     log=args.live_log, bars=main and console.is_terminal)  # fmt: skip
    if not main:
        return
    console.print(lm_table(results))

    def outputs(folder: Path) -> list[Path]:
        shutil.copyfile(args.live_log, folder / LOG)
        return draw_lm_figures(results, folder)

    save_outputs(console, out, outputs, results, inputs=[config.data, args.model_config])
    args.live_log.unlink()  # now metrics.jsonl
    if args.save is not None:
        console.print(f"saved the trained models in {escape(args.save)}/: "
                      f"{', '.join(escape(a) for a in config.algos)}")  # fmt: skip
