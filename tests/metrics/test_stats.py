"""Confidence intervals over seeds."""

from __future__ import annotations

import numpy as np
import pytest

from iftgym.metrics.stats import mean_ci, summarize, t_quantile


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706205), (2, 4.302653), (4, 2.776445), (19, 2.093024)])
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-6)


def test_mean_ci_is_the_student_t_interval():
    values = np.array([0.1, 0.4, 0.35, 0.2])
    mean, low, high = mean_ci(values)
    half = 3.182446 * values.std(ddof=1) / 2
    assert mean == pytest.approx(0.2625) and (low, high) == pytest.approx((mean - half, mean + half), abs=1e-6)
    mean, low, high = mean_ci(np.array([0.3]))  # one seed: a mean, and honestly no interval
    assert mean == 0.3 and np.isnan(low) and np.isnan(high)
    assert summarize(np.array([0.3])) == {"mean": 0.3, "ci95_low": None, "ci95_high": None}


def test_summarize_clips_a_probability_interval_to_0_1():
    values = np.array([1.0, 1.0, 0.0])
    raw = summarize(values)
    assert raw["ci95_low"] < 0 and raw["ci95_high"] > 1
    clipped = summarize(values, (0.0, 1.0))
    assert clipped == {"mean": raw["mean"], "ci95_low": 0.0, "ci95_high": 1.0}
