"""``iftgym compare``: every algorithm on the same world and seeds — the paper's Frozen Lake experiment by default, the
token world (``--world tokens``) or a plugin's world (``--plugin my_world.py --world NAME``) — with reference rows,
paired statistics, ``results.json`` and figures. Its flags are generated from :class:`CompareConfig`'s fields;
``iftgym lm`` is the same command with the token world's defaults."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from iftgym.cli.common import (
    UsageError,
    add_settings,
    add_training_arguments,
    given_settings,
    key_values,
    load_plugins,
    parse_overrides,
    quiet_hugging_face,
    run_experiment,
    save_outputs,
    writable_dir,
)

CACHE = ".iftgym-cache/sb3"  # inside --out: a run writes only there
LOG = "metrics.jsonl"  # every step's metrics, among the outputs of a finished run
LIVE_LOG = "metrics.live.jsonl"  # the same, written as training goes: what a failed or killed run measured


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym compare`` and its options."""
    from iftgym.experiments.config import CompareConfig

    parser = sub.add_parser("compare", help="every algorithm on the same world and seeds (Frozen Lake, tokens or a "
                            "plugin's world): reference rows, paired statistics, figures")  # fmt: skip
    add_settings(parser, CompareConfig)
    add_run_arguments(parser, "runs/compare")
    parser.set_defaults(run=run, fixed={})


def add_run_arguments(parser: argparse.ArgumentParser, out: str, grid: bool = True) -> None:
    """What a run takes beside its settings: ``--set``, ``--stage-lr``, ``--plugin``, with ``grid`` Frozen Lake's
    ``--workers`` and ``--no-cache``, ``--save`` and ``--out``."""
    add_training_arguments(parser, "--algos")
    parser.set_defaults(workers=None, no_cache=False)
    if grid:
        _add_grid_arguments(parser)
    parser.add_argument("--save", default=None, metavar="DIR",
                        help="write each trained model with its tokenizer into DIR/<algorithm> (its name made safe: "
                        "sft+dpo -> sft-dpo; safetensors) [tokens]")  # fmt: skip
    parser.add_argument("--out", default=out, help=f"output folder (default: {out})")


def _add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes that train the algorithms and sb3-ppo's seeds beside the main one "
                        "(default: one per core but one; 0: all in the main process, one after another); results do "
                        "not depend on it [frozen-lake]")  # fmt: skip
    parser.add_argument("--no-cache", action="store_true",
                        help="train every sb3-ppo seed again rather than read it from OUT/.iftgym-cache (where each "
                        "seed is kept by map, seed, settings and library versions) [frozen-lake]")  # fmt: skip


def build_config(args: argparse.Namespace, fixed: dict[str, Any]) -> Any:
    """The :class:`CompareConfig` of the parsed ``args`` (the settings given, ``fixed`` ones on top), after the checks
    that only the command line can make: a flag of another world, flags that could not take effect."""
    from iftgym.experiments.config import FROZEN_LAKE, SB3, TOKENS, CompareConfig
    from iftgym.settings import flag_of, settings_of

    load_plugins(args.plugin)
    given = {**given_settings(args, CompareConfig), **fixed}
    world = given.get("world", CompareConfig.world)
    for field in settings_of(CompareConfig):
        owner = field.metadata["world"]
        if field.name in given and owner is not None and owner != world:
            raise UsageError(f"{flag_of(field)} is a setting of world {owner!r}, not of {world!r}: drop it or run "
                             f"--world {owner}")  # fmt: skip
    if "world_args" in given and world in (FROZEN_LAKE, TOKENS):
        raise UsageError(f"--world-arg is for a plugin world: world {world!r} has flags of its own (see --help)")
    for flag, given_here, owner in (("--workers", args.workers is not None, FROZEN_LAKE),
                                    ("--no-cache", args.no_cache, FROZEN_LAKE), ("--save", args.save is not None,
                                                                                 TOKENS)):  # fmt: skip
        if given_here and world != owner:
            raise UsageError(f"{flag} is an option of world {owner!r}, not of {world!r}: drop it")
    if world == FROZEN_LAKE:
        if "random_maps" in given and "maps" in given:
            raise UsageError("--map and --random-maps exclude each other: give maps, or a number of random maps")
        if "size" in given and not given.get("random_maps"):
            raise UsageError("--size has no effect without --random-maps: add --random-maps N or drop --size")
        if "success_rate" in given and not given.get("slippery"):
            raise UsageError("--success-rate has no effect without --slippery: add --slippery or drop --success-rate")
        algos = given.get("algos") or CompareConfig(world=FROZEN_LAKE, seeds=2).algos
        for flag, given_here in (("--sb3-timesteps", "sb3_timesteps" in given), ("--no-cache", args.no_cache)):
            if given_here and SB3 not in algos:
                raise UsageError(f"{flag} has no effect without {SB3} in --algos: add it or drop {flag}")
    if world == TOKENS and "data" in given and "task" not in given:
        given["task"] = "jsonl"
    model = next((name for name in ("model_config", "pretrained") if name in given), None)
    shape = [f"--{name.replace('_', '-')}" for name in ("n_layer", "n_head", "n_embd") if name in given]
    if model is not None and shape:
        verb = "has" if len(shape) == 1 else "have"
        raise UsageError(f"{', '.join(shape)} {verb} no effect with --{model.replace('_', '-')}: the Hugging Face "
                         "model's own config sets its shape")  # fmt: skip
    if args.workers is not None:
        from iftgym.parallel import MAX_WORKERS
        from iftgym.validate import at_least

        at_least("--workers", args.workers, 0, high=MAX_WORKERS)
    return CompareConfig(**given, rule_overrides=parse_overrides(args.set), plugins=list(args.plugin),
                         stage_lrs=key_values(args.stage_lr, "--stage-lr", "RULE=LR"))  # fmt: skip


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym compare`` (or ``iftgym lm``) with parsed ``args``, printing to ``console``."""
    from iftgym import distributed
    from iftgym.experiments.compare import compare
    from iftgym.experiments.config import FROZEN_LAKE, TOKENS
    from iftgym.explain.figures import draw_figures
    from iftgym.explain.tables import comparison_tables
    from iftgym.io import LazyLog
    from iftgym.policies.folder import check_model_destination, model_folder
    from iftgym.worlds.frozen_lake.maps import load_map

    quiet_hugging_face()
    config = build_config(args, args.fixed)
    if config.world == FROZEN_LAKE:
        for name in config.maps if not config.random_maps else []:
            load_map(name)  # unknown maps fail before any training
    out = writable_dir(args.out)
    if args.save is not None:
        writable_dir(args.save)
        for algo in config.algos:
            check_model_destination(model_folder(args.save, algo))
    if config.world == TOKENS:
        from iftgym.policies.base import resolve_device

        distributed.init_from_environment(resolve_device(config.device))
    main = distributed.is_main()
    args.live_log = out / LIVE_LOG if config.world != FROZEN_LAKE else None
    log = LazyLog(args.live_log) if args.live_log is not None and main else None
    try:
        if config.world == FROZEN_LAKE:
            results = run_experiment(console, compare, config, cache=None if args.no_cache else out / CACHE,
                                     workers=args.workers)  # fmt: skip
        else:
            results = compare(config, progress=lambda text: console.print(escape(text)) if main else None, log=log,
                              save=args.save, bars=main and console.is_terminal)  # fmt: skip
    finally:
        if log is not None:
            log.close()
    if not main:
        return
    for table in comparison_tables(results):
        console.print(table)
    inputs = [*config.maps, config.data, args.model_config if "model_config" in vars(args) else None]

    def outputs(folder: Path) -> list[Path]:
        if config.world == FROZEN_LAKE:
            return draw_figures(results, folder)
        from iftgym.explain.strips import draw_world_figures
        from iftgym.explain.update_tokens import draw_update_strip_figures

        if log is not None and log.path.exists():
            shutil.copyfile(log.path, folder / LOG)
        return [*draw_world_figures(results, folder), *draw_update_strip_figures(results, folder)]

    save_outputs(console, out, outputs, results.to_json(), inputs=inputs)
    if log is not None:
        log.path.unlink(missing_ok=True)  # now metrics.jsonl
    if args.save is not None:
        console.print(f"saved the trained models in {escape(args.save)}/: "
                      f"{', '.join(escape(a) for a in config.algos)}")  # fmt: skip
