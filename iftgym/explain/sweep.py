"""A sweep's report, built from its finished cells: a table per rule, the equal-budget table, heatmaps of the
paired difference to the baseline over two axes (non-significant cells marked) and curves over each axis."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from rich.markup import escape
from rich.table import Table

from iftgym.experiments.compare import LOWER_IS_BETTER
from iftgym.experiments.results import AlgorithmResult
from iftgym.explain.canvas import save_figure
from iftgym.io import safe_name
from iftgym.rules.registry import recipe_rules

BUDGET_SEED = 0


def _scored(records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished cells with results, in a stable order, their axis values hashable (a list, such as a ``maps`` axis's
    value, becomes its JSON text)."""
    cells = [{**r, "axes": {axis: _hashable(value) for axis, value in r["axes"].items()}}
             for r in records.values() if "results" in r]  # fmt: skip
    return sorted(cells, key=lambda r: [str(v) for v in r["axes"].values()])


def _hashable(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def lower_is_better(records: dict[str, dict[str, Any]], metric: str) -> bool:
    """Whether ``metric`` is better lower: as the cells' world says (a world other than Frozen Lake lists its
    metrics), else as Frozen Lake's."""
    for record in _scored(records):
        declared = record["results"].maps[0].metrics.get(metric)
        if declared is not None:
            return declared.lower_is_better
    return LOWER_IS_BETTER.get(metric, False)


def metric_names(records: dict[str, dict[str, Any]]) -> list[str]:
    """The metrics the cells measured (their first cell's, every algorithm and reference row alike)."""
    for record in _scored(records):
        rows = _rows(record)
        if rows:
            return list(next(iter(rows.values())).summary)
    return []


def _rows(record: dict[str, Any]) -> dict[str, AlgorithmResult]:
    """The algorithms of a cell (first map; a cell over several maps is summarised by its first), those not skipped."""
    return record["results"].maps[0].trained()


def _summary(record: dict[str, Any], algo: str, metric: str) -> dict[str, Any]:
    """The metric's mean and 95% interval in a cell: over its seeds on one map; over its maps' means (those where
    every algorithm ran) when the cell compares several maps."""
    across = (record["results"].across_maps or {}).get(metric, {})
    if algo in across:
        return across[algo]
    return _rows(record)[algo].summary[metric]


def _mean(record: dict[str, Any], algo: str, metric: str) -> float:
    mean = _summary(record, algo, metric)["mean"]
    return float("nan") if mean is None else float(mean)


def _paired(record: dict[str, Any]) -> dict[str, Any]:
    """A cell's paired statistics: across its maps (paired by map) when it has several, else over its seeds."""
    results = record["results"]
    return results.paired_across_maps or results.maps[0].paired or {}


def algorithms(records: dict[str, dict[str, Any]]) -> list[str]:
    """Every algorithm of the sweep, in the order the cells name them."""
    names: dict[str, None] = {}
    for record in _scored(records):
        names.update(dict.fromkeys(_rows(record)))
    return list(names)


def rule_tables(records: dict[str, dict[str, Any]], metric: str = "mse") -> list[Table]:
    """One table per algorithm: each cell's axis values, the metric's mean [95% CI] (over seeds, or over maps for a
    cell of several maps), success, and the paired difference to the cell's baseline (``*``: Holm-adjusted
    p < 0.05)."""
    cells = _scored(records)
    axes = list(cells[0]["axes"]) if cells else []
    tables = []
    for algo in algorithms(records):
        table = Table(
            title=f"{escape(algo)}: {metric} per cell, mean [95% CI] over seeds (over maps, paired by map, "
            "for a cell of several maps)"
        )
        for axis in axes:
            table.add_column(escape(axis), justify="right")
        second = ["success"] if "success" in metric_names(records) and metric != "success" else []
        for column in (metric, *second, f"Δ {metric} vs baseline"):
            table.add_column(column, justify="right")
        for record in cells:
            if algo not in _rows(record):
                continue
            difference = _paired(record).get("rows", {}).get(algo, {}).get(metric, {}).get("difference")
            delta = "-" if difference is None or difference["ci95_low"] is None else (
                f"{difference['mean']:+.4f} [{difference['ci95_low']:+.4f}, {difference['ci95_high']:+.4f}]"
                + ("*" if (difference.get("p_holm") or 1) < 0.05 else ""))  # fmt: skip
            table.add_row(*(escape(str(v)) for v in record["axes"].values()), _interval(_summary(record, algo, metric)),
                          *(_interval(_summary(record, algo, name)) for name in second), delta)  # fmt: skip
        tables.append(table)
    return tables


def _interval(stats: dict[str, Any]) -> str:
    if stats["mean"] is None:
        return "-"
    if stats["ci95_low"] is None:
        return f"{stats['mean']:.4f}"
    return f"{stats['mean']:.4f} [{stats['ci95_low']:.4f}, {stats['ci95_high']:.4f}]"


def equal_budget(records: dict[str, dict[str, Any]], metric: str = "mse") -> dict[str, dict[str, Any]]:
    """For each algorithm: the best and the median of the metric's per-cell mean over the same number of tuning
    settings for every algorithm — the fewest any algorithm has (a setting: the axes that change its result: its own
    ``RULE.PARAM`` axes and every shared one), drawn with a fixed seed — so no rule wins by having more tries."""
    cells = _scored(records)
    per_algo: dict[str, dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in cells:
        for algo in _rows(record):
            rules = recipe_rules(algo)
            setting = tuple((axis, value) for axis, value in record["axes"].items()
                            if "." not in axis or axis.partition(".")[0] in rules)  # fmt: skip
            per_algo[algo][setting].append(_mean(record, algo, metric))
    if not per_algo:
        return {}
    budget = min(len(settings) for settings in per_algo.values())
    lower = lower_is_better(records, metric)
    rng = np.random.default_rng(BUDGET_SEED)
    result = {}
    for algo, settings in per_algo.items():
        scores = np.array([np.mean(values) for values in settings.values()])
        chosen = scores[np.sort(rng.permutation(len(scores))[:budget])]
        best = chosen.min() if lower else chosen.max()
        result[algo] = {"settings": len(scores), "budget": budget, "best": float(best),
                        "median": float(np.median(chosen))}  # fmt: skip
    return result


def budget_table(budget: dict[str, dict[str, Any]], metric: str = "mse") -> Table:
    """The equal-budget result as a table."""
    size = next(iter(budget.values()))["budget"] if budget else 0
    table = Table(title=f"equal tuning budget: best and median {metric} over {size} settings per algorithm")
    for column in ("algorithm", "settings swept", f"best {metric}", f"median {metric}"):
        table.add_column(column, justify="right")
    for algo, row in budget.items():
        table.add_row(escape(algo), str(row["settings"]), f"{row['best']:.4f}", f"{row['median']:.4f}")
    return table


REPORT_SCHEMA = "iftgym.sweep-report/1"


def report_data(records: dict[str, dict[str, Any]], metric: str = "mse") -> dict[str, Any]:
    """The report's numbers as ``report.json`` keeps them (:data:`REPORT_SCHEMA`): the metric and its direction, the
    equal-budget result, and per finished cell its axes and each algorithm's mean [95% CI] of the metric (over
    seeds, or over maps) with its paired difference to the baseline where there is one."""
    cells = []
    for record in _scored(records):
        paired = _paired(record)
        rows = {}
        for algo in _rows(record):
            difference = paired.get("rows", {}).get(algo, {}).get(metric, {}).get("difference")
            rows[algo] = {"summary": _summary(record, algo, metric), "difference": difference}
        cells.append({"key": record["key"], "axes": record["axes"], "baseline": paired.get("baseline"), "rows": rows})
    return {"schema": REPORT_SCHEMA, "metric": metric, "lower_is_better": lower_is_better(records, metric),
            "cells": cells, "equal_budget": equal_budget(records, metric)}  # fmt: skip


def heatmaps(records: dict[str, dict[str, Any]], x: str, y: str, metric: str) -> Figure | None:
    """For each algorithm but the baseline, the mean paired difference of ``metric`` to the baseline over axes
    ``x`` and ``y`` (averaged over the other axes), a dot where it is not significant (Holm-adjusted p >= 0.05 in
    any of the cells averaged)."""
    cells = [r for r in _scored(records) if x in r["axes"] and y in r["axes"]]
    if not cells:
        return None
    xs = sorted({r["axes"][x] for r in cells}, key=str)
    ys = sorted({r["axes"][y] for r in cells}, key=str)
    baseline = _paired(cells[0]).get("baseline")
    others = [a for a in algorithms(records) if a != baseline]
    if not others or baseline is None:
        return None
    fig = Figure(figsize=(3.6 * len(others) + 1, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(others)))
    bound = 1e-12
    grids = {}
    for algo in others:
        total, count, significant = (np.zeros((len(ys), len(xs))) for _ in range(3))
        significant += 1
        for record in cells:
            difference = _paired(record).get("rows", {}).get(algo, {}).get(metric, {}).get("difference")
            if difference is None:
                continue
            i, j = ys.index(record["axes"][y]), xs.index(record["axes"][x])
            total[i, j] += difference["mean"]
            count[i, j] += 1
            significant[i, j] *= (difference.get("p_holm") or 1.0) < 0.05
        grid = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        grids[algo] = (grid, significant.astype(bool))
        bound = max(bound, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.0)
    for ax, (algo, (grid, significant)) in zip(axes, grids.items()):
        cmap = "RdBu_r" if lower_is_better(records, metric) else "RdBu"
        image = ax.imshow(grid, cmap=cmap, vmin=-bound, vmax=bound, origin="lower", aspect="auto")
        rows, cols = np.nonzero(~significant & np.isfinite(grid))
        ax.scatter(cols, rows, marker="o", s=14, color="black", label="not significant")
        ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_yticks(range(len(ys)), [str(v) for v in ys])
        ax.set(xlabel=x, ylabel=y, title=f"{algo} − {baseline}")
    fig.colorbar(image, ax=list(axes), label=f"Δ {metric} (red: worse)")
    fig.suptitle(f"paired difference of {metric} to {baseline} (dots: not significant, Holm p >= 0.05)")
    return fig


def curves(records: dict[str, dict[str, Any]], axis: str, metric: str) -> Figure | None:
    """Each algorithm's ``metric`` over one axis: mean over the cells at each value (and over seeds), with the 95%
    interval of one cell where only one cell has that value, else the spread of the cells' means (± 1.96 SE)."""
    cells = [r for r in _scored(records) if axis in r["axes"]]
    values = sorted(
        {r["axes"][axis] for r in cells}, key=lambda v: (isinstance(v, str), v if not isinstance(v, list) else str(v))
    )
    if len(values) < 2 or not all(isinstance(v, int | float) for v in values):
        return None
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for algo in algorithms(records):
        means, lows, highs = [], [], []
        for value in values:
            at = [r for r in cells if r["axes"][axis] == value and algo in _rows(r)]
            cell_means = [_mean(r, algo, metric) for r in at]
            if len(at) == 1:
                summary = _summary(at[0], algo, metric)
                low, high = summary["ci95_low"], summary["ci95_high"]
            else:
                se = np.std(cell_means, ddof=1) / np.sqrt(len(cell_means)) if len(cell_means) > 1 else np.nan
                low, high = np.mean(cell_means) - 1.96 * se, np.mean(cell_means) + 1.96 * se
            means.append(np.mean(cell_means) if cell_means else np.nan)
            lows.append(np.nan if low is None else low)
            highs.append(np.nan if high is None else high)
        (line,) = ax.plot(values, means, marker="o", label=algo)
        ax.fill_between(values, lows, highs, color=line.get_color(), alpha=0.2)
    ax.set(xlabel=axis, ylabel=metric, title=f"{metric} over {axis} (mean, 95% interval)")
    ax.legend(fontsize=8)
    return fig


def draw_report(records: dict[str, dict[str, Any]], folder: str | Path, metric: str = "mse",
                heatmap: tuple[str, str] | None = None) -> list[Path]:  # fmt: skip
    """The report's figures in ``folder``: a heatmap over ``heatmap`` (default: the first two numeric axes) and a
    curve over every numeric axis."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    cells = _scored(records)
    if not cells:
        return []
    numeric = [a for a in cells[0]["axes"] if all(isinstance(r["axes"].get(a), int | float) for r in cells)]
    figures: dict[str, Figure | None] = {}
    pair = heatmap or (tuple(numeric[:2]) if len(numeric) >= 2 else None)
    if pair is not None:
        figures[f"heatmap-{safe_name(pair[0])}-{safe_name(pair[1])}.png"] = heatmaps(records, *pair, metric)
    for axis in numeric:
        figures[f"curve-{safe_name(axis)}.png"] = curves(records, axis, metric)
    return [save_figure(fig, out / name) for name, fig in figures.items() if fig is not None]
