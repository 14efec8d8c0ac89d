"""The ``iftgym`` command line. Each sub-command is a small function; errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from iftgym.arguments import add_dynamics_arguments
from iftgym.compare import (
    ALL_ALGOS,
    DEFAULT_ALGOS,
    LOWER_IS_BETTER,
    CompareConfig,
    compare,
    load_results,
)
from iftgym.explain.bias import add_bias_parser
from iftgym.explain.figures import draw_figures
from iftgym.frozen_lake import ACTION_ARROWS, FrozenLakeMDP
from iftgym.io import write_json
from iftgym.lm import add_lm_parser
from iftgym.maps import catalogue, catalogue_description, load_map
from iftgym.rules import make_rule

TILE_STYLES = {"S": "bold blue", "F": "white", "H": "bold white on grey23", "G": "bold green"}


class UsageError(ValueError):
    """Bad command-line input; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(message)


def draw_map(model: FrozenLakeMDP, values: np.ndarray | None = None, policy: np.ndarray | None = None) -> Text:
    """The map as rich text; with ``values`` and ``policy``, each cell shows its value and greedy arrows."""
    text = Text()
    vmax = float(values.max()) if values is not None and values.max() > 0 else 1.0
    for row in range(model.nrow):
        for col in range(model.ncol):
            s = row * model.ncol + col
            tile = model.tile(s)
            if values is None:
                text.append(f"{tile} ", style=TILE_STYLES[tile])
                continue
            if tile in "HG":
                text.append(f" {tile:^6}", style=TILE_STYLES[tile])
                continue
            best = policy[s] >= policy[s].max() - 1e-9
            arrows = "".join(a for a, b in zip(ACTION_ARROWS, best) if b)
            shade = int(40 + 200 * values[s] / vmax)
            text.append(
                f"{arrows:<2}{values[s]:.2f}"[:6].rjust(7), style=f"black on rgb({255 - shade},255,{255 - shade})"
            )
        text.append("\n")
    return text


def cmd_maps(args: argparse.Namespace, console: Console) -> None:
    """List the map catalogue with each map drawn."""
    table = Table(title="Frozen Lake map catalogue", show_lines=True)
    for column in ("name", "size", "map", "optimal / second route", "about"):
        table.add_column(column)
    for name, desc in catalogue().items():
        model = FrozenLakeMDP.from_map(desc)
        second = model.suboptimal_route()
        routes = f"{len(model.optimal_route()) - 1} / {len(second) - 1 if second else '-'} moves"
        table.add_row(name, f"{model.nrow}x{model.ncol}", draw_map(model), routes, catalogue_description(name))
    console.print(table)


def cmd_solve(args: argparse.Namespace, console: Console) -> None:
    """Print optimal values with policy arrows and the optimal success probability."""
    model = FrozenLakeMDP.from_map(args.map, slippery=args.slippery, success_rate=args.success_rate)
    values, _, policy = model.value_iteration(args.gamma)
    console.print(
        f"[bold]{args.map}[/] {model.nrow}x{model.ncol}, slippery={model.slippery}"
        + (f" (success_rate={model.success_rate:.3g})" if model.slippery else "")
        + f", gamma={args.gamma}: optimal V with greedy arrows (ties show every best action)"
    )
    console.print(draw_map(model, values, policy))
    console.print(f"optimal success probability from S: [bold]{model.success_probability(policy):.6f}[/]")


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["ift.lam=0.3", "dpo.beta=0.5"]`` -> ``{"ift": {"lam": 0.3}, "dpo": {"beta": 0.5}}`` (values parsed as JSON
    where they can be, else kept as strings)."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        rule, dot, param = key.partition(".")
        if not sep or not dot or not rule or not param:
            raise UsageError(f"--set {item!r} is malformed: expected RULE.PARAM=VALUE, e.g. ift.lam=0.3")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides.setdefault(rule, {})[param] = value
    for rule, params in overrides.items():
        make_rule(rule, **params)  # validate names and values before any training
    return overrides


def writable_dir(path: str) -> Path:
    """Create ``path`` if needed and check that files can be written there, before any work is done."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as err:
        raise UsageError(f"output directory {path!r} is not writable: {err.strerror}") from None
    return out


def format_interval(stats: dict[str, float]) -> str:
    """``mean ± half-width``, or ``mean [low, high]`` where clipping to the metric's range made it lopsided."""
    mean, low, high = stats["mean"], stats["ci95_low"], stats["ci95_high"]
    if np.isclose(mean - low, high - mean, rtol=0, atol=5e-4):
        return f"{mean:.3f} ± {(high - low) / 2:.3f}"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def results_table(entry: dict[str, Any]) -> Table:
    """One map's results: mean ± 95% CI half-width over seeds per algorithm, the best of each column in green."""
    columns = [("mse", "MSE to optimal"), ("success", "P(success)"), ("greedy_success", "P(success) greedy"),
               ("explored", "cells visited"), ("bias", "SFT log-bias")]  # fmt: skip
    scored = {a: r for a, r in entry["algorithms"].items() if "summary" in r}
    table = Table(title=f"{entry['name']}: mean ± 95% CI over seeds (optimal P(success) = "
                  f"{entry['optimal']['success']:.3f})")  # fmt: skip
    table.add_column("algorithm")
    for _, label in columns:
        table.add_column(label, justify="right")
    table.add_column("wall s", justify="right")
    best = {}
    for key, _ in columns:
        means = {a: r["summary"][key]["mean"] for a, r in scored.items()}
        if means:
            best[key] = (min if LOWER_IS_BETTER[key] else max)(means.values())
    for algo, result in entry["algorithms"].items():
        if algo not in scored:
            table.add_row(algo, *["-"] * len(columns), f"skipped: {result['skipped']}")
            continue
        cells = []
        for key, _ in columns:
            text = format_interval(result["summary"][key])
            cells.append(f"[bold green]{text}[/]" if np.isclose(result["summary"][key]["mean"], best[key]) else text)
        table.add_row(algo, *cells, f"{result['wall_time']:.1f}")
    return table


def across_maps_table(results: dict[str, Any]) -> Table:
    table = Table(title=f"across {len(results['maps'])} maps: per-map means, then mean ± 95% CI over maps (wins)")
    table.add_column("algorithm")
    for metric in ("mse", "success", "explored"):
        table.add_column(metric, justify="right")
    for algo in results["config"]["algos"]:
        cells = []
        for metric in ("mse", "success", "explored"):
            stats = results["across_maps"][metric].get(algo)
            interval = (
                "-" if stats is None else f"{stats['mean']:.4f} [{stats['ci95_low']:.4f}, {stats['ci95_high']:.4f}]"
            )
            cells.append(interval if stats is None else f"{interval} ({stats['wins']} wins)")
        table.add_row(algo, *cells)
    return table


def cmd_compare(args: argparse.Namespace, console: Console) -> None:
    """Train every algorithm on the map(s) and seeds, print the tables, write results.json and the figures."""
    out = writable_dir(args.out)
    config = CompareConfig(
        maps=args.map, algos=[a.strip() for a in args.algos.split(",") if a.strip()], seeds=args.seeds,
        steps=args.steps, lr=args.lr, hidden=args.hidden, gamma=args.gamma, slippery=args.slippery,
        success_rate=args.success_rate, demos=args.demos, sb3_timesteps=args.sb3_timesteps,
        random_maps=args.random_maps, size=args.size, rule_overrides=parse_overrides(args.set),
    )  # fmt: skip
    for name in config.maps if not config.random_maps else []:
        load_map(name)  # unknown maps fail before any training
    with console.status("training") as status:
        results = compare(config, progress=lambda text: status.update(f"training {text}"))
    for entry in results["maps"]:
        console.print(results_table(entry))
    if "across_maps" in results:
        console.print(across_maps_table(results))
    write_json(results, out / "results.json")
    figures = draw_figures(results, out)
    console.print(f"wrote {out / 'results.json'} and {len(figures)} figures in {out}/")


def cmd_plot(args: argparse.Namespace, console: Console) -> None:
    """Redraw the figures of a saved comparison without retraining."""
    results = load_results(args.results)
    out = writable_dir(args.out or str(Path(args.results).parent))
    for entry in results["maps"]:
        console.print(results_table(entry))
    figures = draw_figures(results, out)
    console.print(f"wrote {len(figures)} figures in {out}/")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="iftgym", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("maps", help="list the Frozen Lake map catalogue").set_defaults(func=cmd_maps)

    solve = sub.add_parser("solve", help="solve a map exactly and show V*, the optimal policy and success")
    solve.add_argument("--map", default="paper", help="catalogue name or map file (default: paper)")
    add_dynamics_arguments(solve)
    solve.set_defaults(func=cmd_solve)

    comp = sub.add_parser("compare", help="the paper's Frozen Lake experiment: every algorithm, many seeds")
    comp.add_argument("--map", nargs="+", default=["paper"], help="catalogue names or map files (default: paper)")
    comp.add_argument("--algos", default=",".join(DEFAULT_ALGOS),
                      help=f"comma-separated, from: {', '.join(ALL_ALGOS)} (default: %(default)s)")  # fmt: skip
    comp.add_argument("--seeds", type=int, default=20, help="seeds per algorithm, trained batched (default: 20)")
    comp.add_argument("--steps", type=int, default=300, help="optimiser steps per algorithm (default: 300)")
    comp.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default: 0.01)")
    comp.add_argument("--hidden", type=int, default=64, help="hidden width of the two-layer policy (default: 64)")
    add_dynamics_arguments(comp)
    comp.add_argument("--demos", type=int, default=1, help="demonstrations (and pairs) sampled per map (default: 1)")
    comp.add_argument("--sb3-timesteps", type=int, default=5000, help="environment steps per SB3 PPO seed")
    comp.add_argument("--random-maps", type=int, default=0, help="sweep over N random maps instead of --map")
    comp.add_argument("--size", type=int, default=6, help="side of the random maps (default: 6)")
    comp.add_argument("--set", action="append", default=[], metavar="RULE.PARAM=VALUE",
                      help="a rule hyper-parameter, e.g. --set ift.lam=0.3 (repeatable)")  # fmt: skip
    comp.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    comp.set_defaults(func=cmd_compare)

    plot = sub.add_parser("plot", help="redraw the figures of a saved results.json without retraining")
    plot.add_argument("results", help="path of a results.json written by iftgym compare")
    plot.add_argument("--out", default=None, help="output folder (default: the results file's folder)")
    plot.set_defaults(func=cmd_plot)
    add_bias_parser(sub)
    add_lm_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iftgym`` console script."""
    console = Console()
    if not console.is_terminal:  # files and pipes get whole table rows instead of 80-column wrapping
        console = Console(width=140)
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace, Console], None] = args.func
        func(args, console)
    except (ValueError, OSError) as err:
        print(f"iftgym: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iftgym: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
