"""``iftgym bias``: train one algorithm, then show SFT's optimism along the optimal demonstration, step by step."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from iftgym.cli.common import UsageError, add_dynamics_arguments, dynamics, load_plugins, writable_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym bias`` and its options."""
    parser = sub.add_parser("bias", help="train one algorithm and show SFT's optimism along the demonstration")
    parser.add_argument("--map", default="paper", help="catalogue name or map file (default: paper)")
    parser.add_argument("--algo", default="sft", help="rule or recipe to train, e.g. sft, ift, sft+dpo (default: sft)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="policy initialisation and training seed (default: 0)")
    add_dynamics_arguments(parser)
    parser.add_argument("--lam", type=float, default=0.2, help="IFT's lambda, for training IFT and the IFT column")
    parser.add_argument("--png", default=None, help="also draw the trained policy's bias map to this PNG file")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import a Python file or module first, so that the rules it registers can be named in "
                        "--algo (repeatable)")  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym bias`` with parsed ``args``, printing to ``console``."""
    from iftgym.experiments.bias import BiasConfig, run_bias
    from iftgym.explain.bias import plot_bias_maps
    from iftgym.explain.tables import bias_table
    from iftgym.loop import make_stages

    load_plugins(args.plugin)
    slippery, success_rate, gamma = dynamics(args)
    config = BiasConfig(map=args.map, algo=args.algo, steps=args.steps, seed=args.seed, slippery=slippery,
                        success_rate=success_rate, gamma=gamma, lam=args.lam)  # fmt: skip
    make_stages(config.algo, config.steps)  # an unknown rule fails before training
    if args.png is not None:  # checked before training, not after
        if not args.png.endswith(".png"):
            raise UsageError(f"--png {args.png!r} does not end in .png: expected a PNG file name")
        writable_dir(str(Path(args.png).parent))
    result = run_bias(config)
    title = (
        f"{args.algo} on {args.map} ({args.steps} steps, seed {args.seed}"
        + (", slippery" if result.world.slippery else "")
        + "): preference for the optimal demonstration's action"
    )
    console.print(bias_table(result, escape(title)))
    console.print(f"summed log-bias along the demonstration (reach={result.estimates.reach!r}): "
                  f"[bold]{result.total_log_bias:.4f}[/]")  # fmt: skip
    if args.png:
        path = plot_bias_maps({args.algo: result.bias_map}, result.world, args.png)
        console.print(f"bias map written to {escape(str(path))}")
