"""Bias-map figures: a PNG written atomically, and clear errors for empty or misshapen maps."""

from __future__ import annotations

import numpy as np
import pytest

from iftgym import FrozenLakeMDP
from iftgym.explain.bias import plot_bias_maps
from iftgym.metrics.bias import bias_map
from iftgym.policies import MLPPolicy


def test_plot_bias_maps_writes_a_png(tmp_path):
    world = FrozenLakeMDP.from_map("paper")
    maps = {name: bias_map(MLPPolicy(world.n_states, 4, seeds=[s, s + 5]), world) for name, s in (("a", 0), ("b", 1))}
    path = plot_bias_maps(maps, world, tmp_path / "bias.png", title="two policies")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bias.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="expected at least one"):
        plot_bias_maps({}, world, tmp_path / "x.png")
    with pytest.raises(ValueError, match="shape"):
        plot_bias_maps({"a": np.zeros((2, 2))}, world, tmp_path / "x.png")
