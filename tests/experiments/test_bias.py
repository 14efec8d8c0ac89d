"""experiments.bias: one trained policy's estimates along the demonstration, returned as data."""

from __future__ import annotations

import numpy as np
import pytest

from iftgym.experiments.bias import BiasConfig, run_bias


def test_run_bias_measures_the_trained_policy_along_the_demonstration() -> None:
    result = run_bias(BiasConfig(map="paper", algo="sft+ift", steps=20, seed=3, lam=0.3))
    est = result.estimates
    assert result.policy.seeds == [3] and est.lam == 0.3 and est.reach == "path"
    assert est.teacher_forced.shape == (1, len(result.demo))
    # the summed log-bias is the sum of the per-step log-bias, which on a deterministic map is the prefix loss
    assert result.total_log_bias == pytest.approx(float(np.nansum(est.sft_bias.log)), rel=1e-12)
    np.testing.assert_allclose(est.sft_bias.log, est.prefix_loss, rtol=0, atol=1e-9)
    assert result.bias_map.shape == (1, result.world.nrow, result.world.ncol)


def test_bias_config_checks_its_values() -> None:
    with pytest.raises(ValueError, match=r"lam=1\.5 is out of range"):
        BiasConfig(lam=1.5)
    with pytest.raises(ValueError, match="steps=0 is out of range"):
        BiasConfig(steps=0)
