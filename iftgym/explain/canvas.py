"""The drawing primitives every picture of a Frozen Lake map shares: tiles, action arrows, panels, and a figure saved
as a PNG file (atomically) or as PNG bytes (for a widget or a web page).

Built with matplotlib's object API (no pyplot), so drawing needs no display and never changes a notebook's backend.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver
from matplotlib.transforms import Bbox

from iftgym.io import atomic_path
from iftgym.worlds.frozen_lake.maps import MOVES
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

TILE_FILL = {"H": "#1f2a44", "S": "#8fb8e8", "G": "#6cc47a"}
# Arrow directions (dx, dy) in plot coordinates (y grows downwards with the inverted axis).
ARROWS = [(dc, dr) for dr, dc in MOVES]


def save_figure(fig: Figure, path: Path, tight: bool = True) -> Path:
    """Save as PNG, atomically (see :mod:`iftgym.io`); ``tight``: cropped to what it draws (matplotlib then draws it
    twice: a figure laid out by its function passes ``False``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight" if tight else None)
    return path


def figure_png(fig: Figure, dpi: int = 110, tight: bool = True, crop: Bbox | None = None) -> bytes:
    """The figure as PNG bytes (for a widget or a web page: nothing is written to disk); ``tight`` as for
    :func:`save_figure`; ``crop``: the region to keep, in inches (:func:`tight_crop`), which draws the figure once.
    Compressed at zlib's fastest level: larger, but faster to encode, for pictures that cross a loopback socket."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches=crop or ("tight" if tight else None),
                pil_kwargs={"compress_level": 1})  # fmt: skip
    return buffer.getvalue()


def tight_crop(fig: Figure, pad: float = 0.15) -> Bbox:
    """The region, in inches, that a tight bounding box would keep, ``pad`` inches wider on every side: passed as
    :func:`figure_png`'s ``crop`` to the next figures of the same layout, it spares each the extra drawing a tight
    box needs (the pad leaves room for a label a few characters longer)."""
    fig.draw_without_rendering()  # what a tight save does first: titles and ticks are placed when drawn
    return fig.get_tightbbox().padded(pad)


def draw_tiles(ax: Axes, model: FrozenLakeMDP, label: bool = True) -> None:
    """Holes, start and goal over whatever the axes already show, with grid lines and no ticks (one image and
    one line collection per panel: drawing cost does not grow with patches per cell)."""
    overlay = np.zeros((model.nrow, model.ncol, 4))
    for s in range(model.n_states):
        tile = model.tile(s)
        row, col = divmod(s, model.ncol)
        if tile in TILE_FILL and (tile != "S" or not label):
            overlay[row, col] = to_rgba(TILE_FILL[tile])
        if label and tile in "SG":
            ax.text(col, row, tile, ha="center", va="center", fontsize=9, weight="bold", zorder=4,
                    color="#1f2a44" if tile == "S" else "white")  # fmt: skip
    ax.imshow(overlay, zorder=2, interpolation="nearest")
    ax.hlines(np.arange(-0.5, model.nrow), -0.5, model.ncol - 0.5, color="#9aa5b1", linewidth=0.6, zorder=1)
    ax.vlines(np.arange(-0.5, model.ncol), -0.5, model.nrow - 0.5, color="#9aa5b1", linewidth=0.6, zorder=1)
    ax.set_xlim(-0.5, model.ncol - 0.5)
    ax.set_ylim(model.nrow - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")


def draw_arrows(ax: Axes, model: FrozenLakeMDP, policy: np.ndarray, greedy_only: bool = False) -> Quiver:
    """One arrow per action from each non-terminal cell's centre, length proportional to its probability (all of
    a panel's arrows as one quiver, returned: :func:`set_arrows` gives it another policy's lengths)."""
    cells = np.repeat(np.flatnonzero(~model.terminal), model.n_actions)
    rows, cols = np.divmod(cells, model.ncol)
    zero = np.zeros(cells.size)
    # sizes in cells (units="xy"), as with one arrow patch per action; an arrow shorter than its head shrinks whole
    quiver = ax.quiver(cols, rows, zero, zero, angles="xy", scale_units="xy", scale=1, units="xy", width=0.035,
                       headwidth=4, headlength=2.9, headaxislength=2.9, minlength=0, color="#c0392b",
                       zorder=3)  # fmt: skip
    set_arrows(quiver, model, policy, greedy_only)
    return quiver


def set_arrows(quiver: Quiver, model: FrozenLakeMDP, policy: np.ndarray, greedy_only: bool = False) -> None:
    """The arrows of :func:`draw_arrows` for ``policy``: ``0.42 x`` its probability (every greedy action at full
    length with ``greedy_only``); an action below 2% (or not greedy) has no arrow (length 0 draws nothing)."""
    probs = policy[~model.terminal]
    shown = probs >= probs.max(axis=1, keepdims=True) - 1e-9 if greedy_only else probs >= 0.02
    length = 0.42 * np.where(shown, 1.0 if greedy_only else probs, 0.0).ravel()
    dx, dy = np.array(ARROWS, dtype=float)[np.tile(np.arange(model.n_actions), len(probs))].T
    quiver.set_UVC(dx * length, dy * length)


def panel_grid(n: int) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels (up to four a row); returns the ``n`` axes in use."""
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.2 * cols, 3.4 * rows))
    grid = fig.add_gridspec(rows, cols)
    # titles just above the axes, where matplotlib would place them (no ticks on top), without searching each draw
    with rc_context({"axes.titley": 1.0}):
        return fig, [fig.add_subplot(grid[i // cols, i % cols]) for i in range(n)]  # no axes made for empty places
