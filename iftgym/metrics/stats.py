"""Statistics over seeds: Student-t intervals, paired differences against a baseline with a multiple-comparison
correction, and the robust aggregates of Agarwal et al. (NeurIPS 2021, "Deep RL at the Edge of the Statistical
Precipice"): the interquartile mean and the probability of improvement, with stratified-bootstrap intervals.

Distributions come from ``scipy.special`` (light to import); the bootstrap is vectorised numpy with a fixed seed, so
every interval is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution with ``df`` degrees of freedom."""
    return float(special.stdtrit(df, p))


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two ends of a Student-t confidence interval of the mean over seeds (the first axis); with one
    seed there is no interval, and both ends are NaN."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half = t_quantile(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return mean, mean - half, mean + half


def summarize(values: np.ndarray, bounds: tuple[float, float] | None = None) -> dict[str, float | None]:
    """``{"mean", "ci95_low", "ci95_high"}`` over seeds (the ends are ``None`` for a single seed: no interval).
    ``bounds`` is the metric's possible range (``(0, 1)`` for a probability): the interval's ends are clipped to it,
    which only removes values the metric cannot take."""
    mean, low, high = mean_ci(values)
    if math.isnan(low):
        return {"mean": mean, "ci95_low": None, "ci95_high": None}
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "ci95_low": low, "ci95_high": high}


def paired_difference(values: np.ndarray, baseline: np.ndarray) -> dict[str, float | None]:
    """Per-seed differences ``values - baseline`` (seed i of both trained from the same initialisation): their mean,
    95% Student-t interval and the two-sided paired t-test's p-value (``None`` ends and p for a single seed; with
    identical differences, p is 1 when they are all 0 and 0 otherwise)."""
    diffs = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
    summary: dict[str, float | None] = dict(summarize(diffs))
    n, spread = diffs.size, diffs.std(ddof=1) if diffs.size > 1 else math.nan
    if n < 2:
        summary["p_value"] = None
    elif spread == 0 or math.isclose(spread, 0, abs_tol=1e-15):
        summary["p_value"] = 1.0 if np.allclose(diffs, 0, atol=1e-15) else 0.0
    else:
        t = diffs.mean() / (spread / math.sqrt(n))
        summary["p_value"] = float(2 * special.stdtr(n - 1, -abs(t)))
    return summary


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of p-values for testing them all at once (family-wise error rate); ``None``
    entries (no test) stay ``None`` and do not count."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def _resample(strata: Sequence[np.ndarray], rng: np.random.Generator, samples: int) -> list[np.ndarray]:
    """Each stratum's values resampled with replacement ``samples`` times: ``(samples, n_i)`` each."""
    return [np.asarray(s, dtype=float)[rng.integers(0, len(s), (samples, len(s)))] for s in strata]


def _interval(point: float, replicates: np.ndarray) -> dict[str, float]:
    low, high = np.quantile(replicates, [0.025, 0.975])
    return {"value": float(point), "ci95_low": float(low), "ci95_high": float(high)}


def _iqm(values: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis: the mean of the middle half (a quarter trimmed from each end)."""
    ordered = np.sort(values, axis=-1)
    n = ordered.shape[-1]
    cut = n // 4
    return ordered[..., cut : n - cut].mean(-1) if n > 2 else ordered.mean(-1)


def iqm_interval(strata: Sequence[np.ndarray], samples: int = BOOTSTRAP_SAMPLES) -> dict[str, float]:
    """Interquartile mean of all values of all ``strata`` (for example one array of per-seed scores per map), with
    a 95% stratified-bootstrap interval: seeds are resampled within each stratum, as Agarwal et al. do over tasks."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    point = _iqm(np.concatenate([np.asarray(s, dtype=float) for s in strata]))
    replicates = _iqm(np.concatenate(_resample(strata, rng, samples), axis=1))
    return _interval(point, replicates)


def _improvement(x: np.ndarray, y: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """``P(X better than Y)`` along the last axis over all pairs of runs, ties counting one half (Mann-Whitney)."""
    x, y = x[..., :, None], y[..., None, :]
    better = (x < y) if lower_is_better else (x > y)
    return (better + 0.5 * (x == y)).mean(axis=(-2, -1))


def improvement_interval(
    values: Sequence[np.ndarray], baseline: Sequence[np.ndarray], lower_is_better: bool,
    samples: int = BOOTSTRAP_SAMPLES,
) -> dict[str, float]:  # fmt: skip
    """Probability of improvement over a baseline (Agarwal et al.): the chance that a run of the rule beats a run of
    the baseline, averaged over strata (maps), with a 95% stratified-bootstrap interval (runs of each resampled
    within each stratum)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    point = np.mean([_improvement(np.asarray(x, float), np.asarray(y, float), lower_is_better)
                     for x, y in zip(values, baseline, strict=True)])  # fmt: skip
    xs, ys = _resample(values, rng, samples), _resample(baseline, rng, samples)
    replicates = np.mean([_improvement(x, y, lower_is_better) for x, y in zip(xs, ys, strict=True)], axis=0)
    return _interval(float(point), replicates)
