"""``iftgym compare``: the paper's Frozen Lake experiment, every algorithm on the same map(s) and seeds."""

from __future__ import annotations

import argparse

from rich.console import Console

from iftgym.cli.common import (
    UsageError,
    add_dynamics_arguments,
    add_training_arguments,
    dynamics,
    key_values,
    load_plugins,
    parse_overrides,
    run_experiment,
    save_outputs,
    split_names,
    writable_dir,
)

DEFAULT_ALGOS = "sft,ift,dpo,orpo,ppo,sb3-ppo"
CACHE = ".iftgym-cache/sb3"  # inside --out: a run writes only there


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym compare`` and its options."""
    parser = sub.add_parser("compare", help="the paper's Frozen Lake experiment: every algorithm, many seeds")
    parser.add_argument("--map", nargs="+", default=None, help="catalogue names or map files (default: paper)")
    parser.add_argument("--algos", default=DEFAULT_ALGOS,
                        help="comma-separated rule names or recipes (a+b: one rule after the other), from the "
                        "registered rules (sft, ift, dpo, dpo-online, orpo, ppo, reinforce, and any plugin's), or "
                        "sb3-ppo (default: %(default)s)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=20, help="seeds per algorithm, trained batched (default: 20)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per algorithm (default: 300)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default: 0.01)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden width of the two-layer policy (default: 64)")
    add_dynamics_arguments(parser)
    parser.add_argument("--demos", type=int, default=1, help="demonstrations (and pairs) sampled per map (default: 1)")
    parser.add_argument("--sb3-timesteps", type=int, default=None,
                        help="environment steps per SB3 PPO seed, with sb3-ppo in --algos (default: 5000)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes that train the algorithms and sb3-ppo's seeds beside the main one "
                        "(default: one per core but one; 0: all in the main process, one after another); results do "
                        "not depend on it")  # fmt: skip
    parser.add_argument("--no-cache", action="store_true",
                        help="train every sb3-ppo seed again rather than read it from OUT/.iftgym-cache (where each "
                        "seed is kept by map, seed, settings and library versions)")  # fmt: skip
    parser.add_argument("--policy", default="mlp", choices=["mlp", "gru", "tabular"],
                        help="the policy every rule trains: mlp (the paper's two-layer network on the current cell), "
                        "gru (a recurrent network over the cells visited so far: scored from its own rollouts) or "
                        "tabular (default: mlp)")  # fmt: skip
    parser.add_argument("--baseline", default=None,
                        help="the row every other row is compared with, seed by seed (default: sft when it runs, else "
                        "the first algorithm; uniform, untrained or demo-copy name a reference row)")  # fmt: skip
    parser.add_argument("--random-maps", type=int, default=0, help="sweep over N random maps instead of --map")
    parser.add_argument("--size", type=int, default=None, help="side of the random maps (default: 6)")
    add_training_arguments(parser, "--algos")
    parser.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym compare`` with parsed ``args``, printing to ``console``."""
    from iftgym.experiments.baselines import SB3
    from iftgym.experiments.compare import CompareConfig, compare
    from iftgym.explain.figures import draw_figures
    from iftgym.explain.tables import across_maps_table, compare_table, paired_table
    from iftgym.parallel import MAX_WORKERS
    from iftgym.validate import at_least
    from iftgym.worlds.frozen_lake.maps import load_map

    load_plugins(args.plugin)
    algos = split_names(args.algos)
    if args.random_maps and args.map is not None:
        raise UsageError("--map and --random-maps exclude each other: give maps, or a number of random maps")
    if args.size is not None and not args.random_maps:
        raise UsageError("--size has no effect without --random-maps: add --random-maps N or drop --size")
    for flag, given in (
        ("--sb3-timesteps", args.sb3_timesteps is not None),
        ("--no-cache", args.no_cache),
    ):
        if given and SB3 not in algos:
            raise UsageError(f"{flag} has no effect without {SB3} in --algos: add it or drop {flag}")
    slippery, success_rate, gamma = dynamics(args)
    defaults = CompareConfig.__dataclass_fields__
    config = CompareConfig(
        maps=args.map or ["paper"], algos=algos, seeds=args.seeds, steps=args.steps, lr=args.lr,
        hidden=args.hidden, gamma=gamma, slippery=slippery, success_rate=success_rate, demos=args.demos,
        sb3_timesteps=args.sb3_timesteps or defaults["sb3_timesteps"].default, random_maps=args.random_maps,
        size=args.size or defaults["size"].default, rule_overrides=parse_overrides(args.set),
        stage_lrs=key_values(args.stage_lr, "--stage-lr", "RULE=LR"), baseline=args.baseline,
        policy=args.policy,
    )  # fmt: skip
    for name in config.maps if not config.random_maps else []:
        load_map(name)  # unknown maps fail before any training
    if args.workers is not None:
        at_least("--workers", args.workers, 0, high=MAX_WORKERS)
    out = writable_dir(args.out)
    cache = None if args.no_cache else out / CACHE
    results = run_experiment(console, compare, config, cache=cache, workers=args.workers)
    for entry in results["maps"]:
        console.print(compare_table(entry))
        if entry["paired"] is not None:
            console.print(paired_table(entry["paired"], entry["name"]))
    if "across_maps" in results:
        console.print(across_maps_table(results))
        if results["paired_across_maps"] is not None:
            console.print(paired_table(results["paired_across_maps"], "across maps"))
    save_outputs(console, out, lambda folder: draw_figures(results, folder), results, inputs=config.maps)
