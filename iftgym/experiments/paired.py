"""Every row of a comparison against a baseline rule, with statistics that hold up.

Seed i of every rule starts from the same network, so the rules' scores are paired by seed: the difference to the
baseline is taken seed by seed (on one map) or map by map (across maps, each map's mean over seeds; only maps where
every compared row ran count). Each difference gets a 95% interval and a paired t-test, and the p-values of all rows
and metrics are adjusted together (Holm). Beside them, the two aggregates Agarwal et al. recommend: the probability
of improvement (a run of the row beats a run of the baseline) and the interquartile mean, each with a 95%
stratified-bootstrap interval (seeds resampled within each map).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from iftgym.experiments.results import Row, WorldResult
from iftgym.metrics.stats import holm, improvement_interval, iqm_interval, paired_difference, summarize

PAIRED_METRICS = ("mse", "mse_rest", "optimal_mass", "mse_own_visits", "optimal_mass_own_visits", "success", "explored")


def paired_statistics(
    entries: list[WorldResult],
    baseline: str,
    lower_is_better: dict[str, bool],
    metrics: tuple[str, ...] = PAIRED_METRICS,
) -> dict[str, Any] | None:
    """Each row of the maps ``entries`` against ``baseline``: ``{"baseline", "maps", "maps_total", "units",
    "rows": {row: {metric: {"difference": {mean, ci95_low, ci95_high, p_value, p_holm}, "improvement": {value,
    ci95_low, ci95_high}, "iqm": {...}}}}}``, counting only the maps where every row ran (``maps`` of
    ``maps_total``); ``None`` when no map has them all, or nothing to compare."""
    wanted = [name for entry in entries for name in entry.scored_rows()]
    wanted = list(dict.fromkeys(wanted))  # every row of the run, in order
    usable = [entry.scored_rows() for entry in entries if set(wanted) <= set(entry.scored_rows())]
    if not usable or baseline not in wanted or len(wanted) < 2:
        return None
    order = wanted
    rows: dict[str, Any] = {}
    tests: list[tuple[str, str]] = []
    for name in order:
        rows[name] = {}
        for metric in metrics:
            values = [np.asarray(rows_of[name].per_seed[metric], float) for rows_of in usable]
            if any(np.isnan(v).any() for v in values):
                continue  # the metric is undefined here (a set of cells is empty)
            result: dict[str, Any] = {"iqm": iqm_interval(values)}
            base = [np.asarray(rows_of[baseline].per_seed[metric], float) for rows_of in usable]
            if name != baseline and not any(np.isnan(b).any() for b in base):
                units = (
                    (values[0], base[0]) if len(usable) == 1 else ([v.mean() for v in values], [b.mean() for b in base])
                )
                result["difference"] = paired_difference(*units)
                result["improvement"] = improvement_interval(values, base, lower_is_better[metric])
                tests.append((name, metric))
            rows[name][metric] = result
    adjusted = holm([rows[name][metric]["difference"]["p_value"] for name, metric in tests])
    for (name, metric), p in zip(tests, adjusted, strict=True):
        rows[name][metric]["difference"]["p_holm"] = p
    return {
        "baseline": baseline,
        "maps": len(usable),
        "maps_total": len(entries),
        "units": "seeds" if len(usable) == 1 else "maps",
        "rows": rows,
    }


def worse_than(statistics: dict[str, Any], row: str, metric: str, lower_is_better: bool) -> bool | None:
    """Whether ``row`` is significantly worse than the baseline on ``metric`` (its 95% interval of the paired
    difference lies wholly on the worse side); ``None`` when there is no interval."""
    difference = statistics["rows"].get(row, {}).get(metric, {}).get("difference")
    if difference is None or difference["ci95_low"] is None:
        return None
    return bool(difference["ci95_low"] > 0 if lower_is_better else difference["ci95_high"] < 0)


def scored(metrics: dict[str, np.ndarray], bounds: dict[str, tuple[float, float]] | None = None) -> Row:
    """Per-seed values and their summaries (intervals clipped to ``bounds[metric]`` where given)."""
    bounds = bounds or {}
    return Row({key: value.tolist() for key, value in metrics.items()},
               {key: summarize(value, bounds.get(key)) for key, value in metrics.items()})  # fmt: skip


def flag_worse_than_untrained(entry: WorldResult, metric: str) -> None:
    """Mark each algorithm of ``entry`` whose ``metric`` is significantly worse (paired, 95%) than the untrained
    model's: training took it further from the goal than not training at all."""
    lower = entry.lower_is_better()
    against = paired_statistics([entry], "untrained", lower, (metric,))
    if against is None:
        return
    for algo, run in entry.trained().items():
        run.worse_than_untrained = worse_than(against, algo, metric, lower[metric])
