"""Console tables (rich) of what experiments return: comparisons, tiny-LM runs, estimator bias, maps.

Each function builds a :class:`rich.table.Table` or :class:`rich.text.Text` from data and prints nothing, so the
command line, notebooks and tests render the same objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from iftgym.experiments.bias import BiasResult
from iftgym.experiments.compare import LOWER_IS_BETTER
from iftgym.worlds.frozen_lake.maps import catalogue, catalogue_description
from iftgym.worlds.frozen_lake.model import ACTION_ARROWS, ACTION_NAMES, FrozenLakeMDP

TILE_STYLES = {"S": "bold blue", "F": "white", "H": "bold white on grey23", "G": "bold green"}


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


def catalogue_table() -> Table:
    """The map catalogue, each map drawn with its route lengths and description."""
    table = Table(title="Frozen Lake map catalogue", show_lines=True)
    for column in ("name", "size", "map", "optimal / second route", "about"):
        table.add_column(column)
    for name, desc in catalogue().items():
        model = FrozenLakeMDP.from_map(desc)
        second = model.suboptimal_route()
        routes = f"{len(model.optimal_route()) - 1} / {len(second) - 1 if second else '-'} moves"
        table.add_row(name, f"{model.nrow}x{model.ncol}", draw_map(model), routes, catalogue_description(name))
    return table


def format_interval(stats: dict[str, float | None], digits: int = 3, brackets: bool = False) -> str:
    """``mean ± half-width``, or ``mean [low, high]`` when ``brackets`` or where clipping to the metric's range made
    the interval lopsided; a single seed has no interval and says so."""
    mean, low, high = stats["mean"], stats["ci95_low"], stats["ci95_high"]
    if low is None or high is None:
        return f"{mean:.{digits}f} (1 seed, no CI)"
    if not brackets and np.isclose(mean - low, high - mean, rtol=0, atol=5 * 10 ** -(digits + 1)):
        return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def compare_table(entry: dict[str, Any]) -> Table:
    """One map's results: mean ± 95% CI half-width over seeds per algorithm, the best of each column in green."""
    columns = [("mse", "MSE to optimal"), ("success", "P(success)"), ("greedy_success", "P(success) greedy"),
               ("explored", "cells visited"), ("bias", "SFT log-bias")]  # fmt: skip
    scored = {a: r for a, r in entry["algorithms"].items() if "summary" in r}
    table = Table(title=f"{escape(entry['name'])}: mean ± 95% CI over seeds (optimal P(success) = "
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
            table.add_row(escape(algo), *["-"] * len(columns), f"skipped: {escape(result['skipped'])}")
            continue
        cells = []
        for key, _ in columns:
            text = format_interval(result["summary"][key])
            cells.append(f"[bold green]{text}[/]" if np.isclose(result["summary"][key]["mean"], best[key]) else text)
        table.add_row(escape(algo), *cells, f"{result['wall_time']:.1f}")
    return table


def across_maps_table(results: dict[str, Any]) -> Table:
    """A sweep over maps: per-map means, then mean and 95% CI over maps, with how often each algorithm won."""
    table = Table(title=f"across {len(results['maps'])} maps: per-map means, then mean ± 95% CI over maps (wins)")
    table.add_column("algorithm")
    for metric in ("mse", "success", "explored"):
        table.add_column(metric, justify="right")
    for algo in results["config"]["algos"]:
        cells = []
        for metric in ("mse", "success", "explored"):
            stats = results["across_maps"][metric].get(algo)
            cells.append("-" if stats is None else f"{format_interval(stats, 4, brackets=True)} ({stats['wins']} wins)")
        table.add_row(escape(algo), *cells)
    return table


def lm_table(results: dict[str, Any]) -> Table:
    """A tiny-LM run: greedy and sampled test reward and greedy train reward per algorithm, mean [95% CI]."""
    task = results["task"]
    table = Table(title=f"{task['name']} ({task['n_train']} train / {task['n_test']} test prompts): "
                  f"mean [95% CI] over {results['config']['seeds']} seeds")  # fmt: skip
    table.add_column("algorithm")
    for label in ("greedy test", "sampled test", "greedy train", "wall s"):
        table.add_column(label, justify="right")
    for algo, entry in results["algorithms"].items():
        cells = [format_interval(entry["summary"][k], brackets=True) for k in ("greedy_test", "sampled_test",
                                                                               "greedy_train")]  # fmt: skip
        table.add_row(escape(algo), *cells, f"{entry['wall_time']:.1f}")
    return table


def bias_table(result: BiasResult, title: str) -> Table:
    """Every estimator along the optimal demonstration, step by step (``iftgym bias``)."""
    est, world = result.estimates, result.world
    caption = (
        "log-bias = log teacher-forced - log exact on-policy; on a deterministic map it equals the sum of the "
        "prefix losses (the identity)"
        if est.reach == "path"
        else "exact on-policy = P(rollout in this cell at this step) x pi: on slippery ice the log-bias is the "
        "-log of that state probability"
    )
    table = Table(title=title, caption=caption)
    for column in ("step", "state", "action", "teacher-forced", f"IFT (λ={est.lam:g})", "exact on-policy",
                   "log-bias", "Σ prefix losses"):  # fmt: skip
        table.add_column(column, justify="right")
    log_bias = est.sft_bias.log[0]
    for n, (state, action) in enumerate(zip(result.demo.states, result.demo.actions)):
        row, col = divmod(int(state), world.ncol)
        table.add_row(
            str(n), f"({row},{col}) {world.tile(int(state))}", f"{ACTION_ARROWS[action]} {ACTION_NAMES[action]}",
            f"{est.teacher_forced[0, n]:.4f}", f"{est.ift[0, n]:.4f}", f"{est.exact[0, n]:.4g}",
            f"{log_bias[n]:.4f}", f"{est.prefix_loss[0, n]:.4f}",
        )  # fmt: skip
    return table
