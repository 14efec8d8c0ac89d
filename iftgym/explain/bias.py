"""Bias maps drawn: one panel per policy of :func:`iftgym.metrics.bias.bias_map`'s values, on one colour scale."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from iftgym.explain.canvas import draw_tiles, save_figure
from iftgym.metrics.bias import SPACES
from iftgym.validate import one_of
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP


def plot_bias_maps(
    maps: Mapping[str, np.ndarray], world: FrozenLakeMDP, path: str | os.PathLike, space: str = "prob",
    title: str | None = None,
) -> Path:  # fmt: skip
    """Draw one panel per policy (``{label: bias_map(...)}``, averaged over seeds) on one shared colour scale and
    save a PNG atomically; holes are dark, G green, S labelled, unreachable cells grey. Returns the path."""
    if not maps:
        raise ValueError("no bias maps to draw: expected at least one {label: map}")
    one_of("space", space, SPACES)
    means = {}
    for label, values in maps.items():
        values = np.asarray(values, dtype=float)
        if values.shape[-2:] != (world.nrow, world.ncol):
            raise ValueError(f"bias map {label!r} has shape {values.shape}, expected (..., {world.nrow}, {world.ncol})")
        means[label] = values.reshape(-1, world.nrow, world.ncol).mean(axis=0)  # NaN cells are NaN in every seed
    finite = np.concatenate([m[np.isfinite(m)] for m in means.values()] + [np.zeros(1)])
    vmin, vmax = min(0.0, float(finite.min())), max(float(finite.max()), 1e-12)
    cmap = colormaps["YlOrRd"].with_extremes(bad="#d0d0d0")  # light to dark red, apart from the navy holes
    fig = Figure(figsize=(3.4 * len(means) + 1.2, 3.6))
    axes = fig.subplots(1, len(means), squeeze=False)[0]
    for ax, (label, values) in zip(axes, means.items()):
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, zorder=0)
        draw_tiles(ax, world)
        for (row, col), value in np.ndenumerate(values):
            if np.isfinite(value) and world.tile(row * world.ncol + col) == "F":
                dark = (value - vmin) / (vmax - vmin) > 0.55
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, zorder=3,
                        color="white" if dark else "black")  # fmt: skip
        ax.set_title(label)
    what = "π(a*|s) (1 - P(at s at t(s)))" if space == "prob" else "-log P(at s at t(s))"
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=f"teacher-forced - on-policy\n{what}")
    fig.suptitle(title or "SFT's optimism per cell (mean over seeds)")
    return save_figure(fig, Path(path))
