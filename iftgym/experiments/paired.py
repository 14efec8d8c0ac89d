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

from iftgym.metrics.stats import holm, improvement_interval, iqm_interval, paired_difference, summarize

PAIRED_METRICS = ("mse", "mse_rest", "optimal_mass", "mse_own_visits", "optimal_mass_own_visits", "success", "explored")


def scored_rows(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A map's rows that have per-seed scores: its algorithms (those not skipped), then its reference rows."""
    rows = {name: run for name, run in entry["algorithms"].items() if "per_seed" in run}
    return {**rows, **entry.get("references", {})}


def paired_statistics(
    entries: list[dict[str, Any]],
    baseline: str,
    lower_is_better: dict[str, bool],
    metrics: tuple[str, ...] = PAIRED_METRICS,
) -> dict[str, Any] | None:
    """Each row of the maps ``entries`` against ``baseline``: ``{"baseline", "maps", "maps_total", "units",
    "rows": {row: {metric: {"difference": {mean, ci95_low, ci95_high, p_value, p_holm}, "improvement": {value,
    ci95_low, ci95_high}, "iqm": {...}}}}}``, counting only the maps where every row ran (``maps`` of
    ``maps_total``); ``None`` when no map has them all, or nothing to compare."""
    wanted = [name for entry in entries for name in scored_rows(entry)]
    wanted = list(dict.fromkeys(wanted))  # every row of the run, in order
    usable = [entry for entry in entries if set(wanted) <= set(scored_rows(entry))]
    if not usable or baseline not in wanted or len(wanted) < 2:
        return None
    order = wanted
    rows: dict[str, Any] = {}
    tests: list[tuple[str, str]] = []
    for name in order:
        rows[name] = {}
        for metric in metrics:
            values = [np.asarray(scored_rows(e)[name]["per_seed"][metric], float) for e in usable]
            if any(np.isnan(v).any() for v in values):
                continue  # the metric is undefined here (a set of cells is empty)
            result: dict[str, Any] = {"iqm": iqm_interval(values)}
            base = [np.asarray(scored_rows(e)[baseline]["per_seed"][metric], float) for e in usable]
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


def scored(metrics: dict[str, np.ndarray], bounds: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """Per-seed values and their summaries (intervals clipped to ``bounds[metric]`` where given), as ``results.json``
    keeps them."""
    bounds = bounds or {}
    return {
        "per_seed": {key: value.tolist() for key, value in metrics.items()},
        "summary": {key: summarize(value, bounds.get(key)) for key, value in metrics.items()},
    }


def flag_worse_than_untrained(entry: dict[str, Any], lower_is_better: dict[str, bool], metric: str) -> None:
    """Mark each algorithm of ``entry`` whose ``metric`` is significantly worse (paired, 95%) than the untrained
    model's: training took it further from the goal than not training at all."""
    against = paired_statistics([entry], "untrained", lower_is_better, (metric,))
    for algo, run in entry["algorithms"].items():
        if "per_seed" in run and against is not None:
            run["worse_than_untrained"] = worse_than(against, algo, metric, lower_is_better[metric])
