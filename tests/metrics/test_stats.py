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


def test_paired_difference_is_the_t_interval_and_test_of_the_per_seed_differences():
    from scipy.stats import ttest_rel

    from iftgym.metrics.stats import paired_difference

    a, b = np.array([0.3, 0.5, 0.4, 0.6]), np.array([0.1, 0.4, 0.1, 0.3])
    result = paired_difference(a, b)  # differences 0.2, 0.1, 0.3, 0.3: mean 0.225, sd 0.0957
    half = 3.182446 * np.std([0.2, 0.1, 0.3, 0.3], ddof=1) / 2
    assert result["mean"] == pytest.approx(0.225)
    assert (result["ci95_low"], result["ci95_high"]) == pytest.approx((0.225 - half, 0.225 + half), abs=1e-6)
    assert result["p_value"] == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-12)
    assert paired_difference(a, a)["p_value"] == 1.0  # identical: no difference at all
    assert paired_difference(a + 1, a)["p_value"] == 0.0  # a constant shift: certain
    assert paired_difference(a[:1], b[:1]) == {"mean": pytest.approx(0.2), "ci95_low": None, "ci95_high": None,
                                               "p_value": None}  # fmt: skip


def test_holm_adjusts_step_down_and_keeps_missing_tests():
    from iftgym.metrics.stats import holm

    assert holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_interquartile_mean_and_probability_of_improvement():
    from iftgym.metrics.stats import improvement_interval, iqm_interval

    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0])
    iqm = iqm_interval([values])
    assert iqm["value"] == pytest.approx(3.5)  # the middle half, 2..5: the outlier does not count
    assert iqm["ci95_low"] <= 3.5 <= iqm["ci95_high"]
    assert iqm_interval([values]) == iqm  # a fixed bootstrap seed: reproducible
    lower = improvement_interval([np.array([1.0, 2.0])], [np.array([3.0, 4.0])], lower_is_better=True)
    assert lower == {"value": 1.0, "ci95_low": 1.0, "ci95_high": 1.0}  # every run beats every baseline run
    tied = improvement_interval([np.array([1.0, 3.0])], [np.array([1.0, 2.0])], lower_is_better=False)
    assert tied["value"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)  # ties count one half
    strata = improvement_interval([np.array([1.0]), np.array([0.0])], [np.array([0.0]), np.array([1.0])], False)
    assert strata["value"] == 0.5  # averaged over strata (maps)
