"""Update maps: the pictures of :mod:`iftgym.metrics.update`'s fields — per cell, arrows of the actions one step
reinforces (red) or suppresses (blue), coloured by size, demonstrated cells outlined, and each cell's change split
into "from its own loss" and "carried from other cells"; and, for one cell, which training cells' losses moved it
(:func:`draw_cell_sources`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from iftgym.metrics.decompose import demonstrated_cells
from iftgym.metrics.update import FIELDS, AnyField, CellSources, FieldSummary, UpdateField, check_cell_field
from iftgym.types import StepBatch, TrainingData
from iftgym.validate import one_of
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure

# matplotlib is imported by the drawing functions only: the fields and their numbers are computed where rules train
# (compare's worker processes), which then need not load it

OWN_COLOUR, CARRIED_COLOUR = "#34495e", "#e67e22"
MIN_ARROW = 0.02  # changes below this fraction of the panel's largest are not drawn


def _mean_or_seed(values: np.ndarray, seed: int | None) -> np.ndarray:
    return values.mean(0) if seed is None else values[seed]


def _boxes(left: np.ndarray, bottom: np.ndarray, width: np.ndarray | float, height: float) -> np.ndarray:
    """``(n, 4, 2)``: the corners of ``n`` axis-aligned boxes, for one ``PolyCollection`` (a ``Rectangle`` patch per box
    costs a colour lookup each, which a figure of many panels feels)."""
    left, bottom = np.asarray(left, float), np.asarray(bottom, float)
    right, top = left + np.broadcast_to(width, left.shape), bottom + height
    return np.stack([np.stack([left, bottom], -1), np.stack([right, bottom], -1), np.stack([right, top], -1),
                     np.stack([left, top], -1)], 1)  # fmt: skip


def draw_update_field(
    ax: Axes,
    field: AnyField,
    model: FrozenLakeMDP,
    demonstrated: np.ndarray,
    which: str = "predicted",
    seed: int | None = None,
    scale: float | None = None,
) -> ScalarMappable:
    """Draw one field on ``ax`` (see :func:`draw_update_map`); ``scale`` is the largest change of the colour scale
    (default this field's). Returns what a colour bar reads."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import Normalize

    from iftgym.explain.canvas import ARROWS, draw_tiles

    check_cell_field(field, model)
    values = _mean_or_seed(field.values(which), seed)
    alive = ~model.terminal
    scale = scale or float(np.abs(values[alive]).max()) or 1.0
    norm = Normalize(-scale, scale)
    draw_tiles(ax, model, label=False)  # S filled rather than lettered: its arrows stay visible
    shown = (np.abs(values) >= MIN_ARROW * scale) & (values != 0) & alive[:, None]
    for name, sign in (("reinforced", 1), ("suppressed", -1)):
        cell, action = np.nonzero(shown & (np.sign(values) == sign))
        rows, cols = np.divmod(cell, model.ncol)
        length = 0.42 * np.abs(values[cell, action]) / scale
        dx, dy = np.array(ARROWS, dtype=float)[action].T
        # reinforced: out of the centre towards the action's side; suppressed: from that side back to the centre
        start = 0.0 if sign > 0 else 1.0
        quiver = ax.quiver(cols + start * dx * length, rows + start * dy * length, sign * dx * length,
                           sign * dy * length, values[cell, action], cmap="RdBu_r", norm=norm, angles="xy",
                           scale_units="xy", scale=1, units="xy", width=0.035, headwidth=4, headlength=2.9,
                           headaxislength=2.9, minlength=0, zorder=3)  # fmt: skip
        quiver.set_gid(name)
    own = np.abs(_mean_or_seed(field.own(), seed)).sum(-1)
    carried = np.abs(_mean_or_seed(field.carried(), seed)).sum(-1)
    total = own + carried
    cells = np.flatnonzero(alive & (total > 0))
    rows, cols = np.divmod(cells, model.ncol)
    share = own[cells] / total[cells]
    parts = (("own", cols - 0.45, 0.9 * share, OWN_COLOUR),
             ("carried", cols - 0.45 + 0.9 * share, 0.9 * (1 - share), CARRIED_COLOUR))  # fmt: skip
    for name, left, width, colour in parts:
        bars = PolyCollection(_boxes(left, rows + 0.36, width, 0.08), facecolor=colour, edgecolor="none", zorder=4)
        bars.set_gid(name)
        ax.add_collection(bars)
    rows, cols = np.divmod(np.flatnonzero(demonstrated), model.ncol)
    outline = PolyCollection(_boxes(cols - 0.45, rows - 0.45, 0.9, 0.9), facecolor="none", edgecolor="black",
                             linewidth=1.6, zorder=3)  # fmt: skip
    outline.set_gid("demonstrated")
    ax.add_collection(outline)
    overall = own[alive].sum() / total[alive].sum() if total[alive].sum() > 0 else float("nan")
    ax.set_title(f"{field.rule}: {100 * overall:.0f}% own, {100 * (1 - overall):.0f}% carried", fontsize=9)
    return ScalarMappable(norm=norm, cmap="RdBu_r")


def draw_update_map(
    field: AnyField | Mapping[str, AnyField],
    model: FrozenLakeMDP,
    demos: StepBatch | TrainingData | None = None,
    which: str = "predicted",
    seed: int | None = None,
    title: str | None = None,
) -> Figure:
    """An update map: per non-terminal cell, one arrow per action whose ``log pi`` the step raises (reinforced:
    pointing out of the centre, red) or lowers (suppressed: pointing back into it, blue), length and colour by
    the size of the change (mean over seeds, or the seed at index ``seed``; changes under 2% of the largest are left
    out); the demonstrated cells outlined; under each cell a bar splitting its change (summed over actions, in
    absolute value) into the part from its own loss terms (dark) and the part carried from other cells' (orange).

    ``field`` is one :class:`UpdateField` (or :class:`FieldSummary`) or several by label (one panel each, on one
    colour scale); ``demos`` define the demonstrated cells (default the model's own; or a boolean mask over the
    cells). Returns the figure; the caller saves it (:func:`iftgym.explain.figures.save_figure`).
    """
    from matplotlib.patches import Patch

    from iftgym.explain.canvas import panel_grid

    fields = {field.rule: field} if isinstance(field, UpdateField | FieldSummary) else dict(field)
    if not fields:
        raise ValueError("no update field to draw: expected at least one")
    one_of("which", which, FIELDS)
    demonstrated = _demonstrated(model, demos)
    alive = ~model.terminal
    for f in fields.values():
        check_cell_field(f, model)
        if seed is not None and isinstance(f, FieldSummary):
            raise ValueError(f"the field of {f.rule!r} is a mean over seeds (a FieldSummary): draw it with seed=None")
    scale = max(float(np.abs(_mean_or_seed(f.values(which), seed)[alive]).max()) for f in fields.values()) or 1.0
    fig, axes = panel_grid(len(fields))
    for ax, (label, f) in zip(axes, fields.items()):
        mappable = draw_update_field(ax, f, model, demonstrated, which, seed, scale)
        ax.set_title(ax.get_title().replace(f"{f.rule}:", f"{label}:", 1), fontsize=9)
    fig.colorbar(mappable, ax=axes, shrink=0.7, label=f"{which} change of log π(a|s)")
    fig.legend(handles=[Patch(color=OWN_COLOUR, label="from the cell's own loss"),
                        Patch(color=CARRIED_COLOUR, label="carried from other cells")],
               loc="lower center", ncol=2, fontsize=8, frameon=False)  # fmt: skip
    first = next(iter(fields.values()))
    who = "mean over seeds" if seed is None else f"seed {first.seeds[seed]}"
    fig.suptitle(title or f"one {first.optimizer} step (lr {first.lr:g}): change of log π per cell and action\n"
                 f"({who}; outlined: demonstrated cells)", fontsize=10)  # fmt: skip
    return fig


def _demonstrated(model: FrozenLakeMDP, demos: StepBatch | TrainingData | np.ndarray | None) -> np.ndarray:
    """The demonstrated cells: of ``demos`` (default the model's own), or ``demos`` itself as a boolean mask."""
    if isinstance(demos, np.ndarray):
        if demos.shape != (model.n_states,):
            raise ValueError(f"a mask of demonstrated cells has shape {demos.shape}: expected ({model.n_states},)")
        return demos.astype(bool)
    demos = model.training_data().demos if demos is None else demos
    return demonstrated_cells(model, demos.demos if isinstance(demos, TrainingData) else demos)


def draw_update_maps(
    rows: Mapping[str, Mapping[str, AnyField]],
    model: FrozenLakeMDP,
    demos: StepBatch | TrainingData | np.ndarray | None = None,
    which: str = "predicted",
    title: str | None = None,
) -> Figure:
    """Update maps over training: one row of panels per training point (``rows``: point label -> {rule label:
    field}), one column per rule label, each panel drawn as :func:`draw_update_map` draws it but on a colour scale of
    its own (its largest change, named in its title): a fresh optimiser's first step and a late one, or PPO's step and
    SFT's, differ by orders of magnitude, and the map shows where and which way each step moves (the table gives the
    sizes). A rule missing at a point leaves its panel empty. ``demos``: the demonstrated cells (or a boolean mask
    over the cells)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    one_of("which", which, FIELDS)
    labels = list(dict.fromkeys(label for fields in rows.values() for label in fields))
    if not labels:
        raise ValueError("no update field to draw: expected at least one")
    demonstrated = _demonstrated(model, demos)
    alive = ~model.terminal
    # laid out here, in inches (saved without a tight bounding box: that would draw it twice)
    width, height = 2.7 * len(labels) + 1.6, 2.95 * len(rows) + 1.3
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(len(rows), len(labels), squeeze=False)
    fig.subplots_adjust(left=0.5 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.95 / height,
                        wspace=0.12, hspace=0.42)  # fmt: skip
    for r, (point, fields) in enumerate(rows.items()):
        for c, label in enumerate(labels):
            ax = axes[r, c]
            if label not in fields:
                ax.axis("off")
                continue
            field = fields[label]
            check_cell_field(field, model)
            largest = float(np.abs(field.values(which).mean(0)[alive]).max())
            draw_update_field(ax, field, model, demonstrated, which, None, largest or 1.0)
            name = label if field.rule == label else f"{label} ({field.rule})"
            ax.set_title(ax.get_title().replace(f"{field.rule}:", f"{name}:", 1) + f"\nlargest |Δ| {largest:.1e}",
                         fontsize=9)  # fmt: skip
            if c == 0:
                ax.set_ylabel(point, fontsize=10)
    fig.colorbar(ScalarMappable(norm=Normalize(-1, 1), cmap="RdBu_r"), ax=axes, shrink=0.6, pad=0.015,
                 label=f"{which} Δ log π(a|s) / the panel's largest")  # fmt: skip
    fig.legend(handles=[Patch(color=OWN_COLOUR, label="from the cell's own loss"),
                        Patch(color=CARRIED_COLOUR, label="carried from other cells")],
               loc="lower center", ncol=2, fontsize=9, frameon=False, borderaxespad=0.2)  # fmt: skip
    fig.suptitle(title or "the next optimiser step of each rule over training: change of log π per cell and action "
                 "(mean over seeds; outlined: demonstrated cells; red: reinforced, blue: suppressed)",
                 fontsize=11)  # fmt: skip
    return fig


def draw_cell_sources(
    field: UpdateField, model: FrozenLakeMDP, cell: int, demos: StepBatch | TrainingData | None = None
) -> Figure:
    """Which training cells moved ``cell`` in one step (:meth:`UpdateField.moved_by`, means over seeds): on the map,
    each source cell coloured by its share of the cell's change (its part projected on the whole change: red pushes
    the cell the way the step moves it, blue against it; shares and the rest's sum to 100%), the cell outlined in
    green, demonstrated cells in black; beside it, each source's change of ``log pi(a|cell)`` per action, with the
    whole change and the rest (momentum, weight decay)."""
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from iftgym.explain.canvas import draw_tiles
    from iftgym.worlds.frozen_lake.model import ACTION_NAMES

    check_cell_field(field, model)
    moved: CellSources = field.moved_by(cell)
    fig = Figure(figsize=(9.5, 3.6), layout="constrained")
    grid, bars = fig.subplots(1, 2, width_ratios=[1, 1.5])
    shares = np.zeros(model.n_states)
    shares[moved.sources] = np.nan_to_num(moved.shares)
    largest = float(np.abs(shares).max()) or 1.0
    heat = grid.imshow(shares.reshape(model.nrow, model.ncol), cmap="RdBu_r", norm=Normalize(-largest, largest),
                       zorder=0)  # fmt: skip
    heat.set_gid("shares")
    draw_tiles(grid, model, label=True)
    for source, share in zip(moved.sources, moved.shares):
        row, col = divmod(int(source), model.ncol)
        grid.text(col, row + 0.3, f"{100 * share:.0f}%", ha="center", va="center", fontsize=7, zorder=5,
                  gid="share")  # fmt: skip
    rows, cols = np.divmod(np.flatnonzero(_demonstrated(model, demos)), model.ncol)
    for row, col in zip(rows, cols):
        grid.add_patch(_outline(row, col, "black", 1.2))
    row, col = divmod(moved.state, model.ncol)
    grid.add_patch(_outline(row, col, "#2ca02c", 3.0, gid="cell"))
    rest = "" if np.isnan(moved.rest_share) else f", rest {100 * moved.rest_share:.0f}%"
    grid.set_title(f"what moved cell {moved.state}: own loss {100 * moved.own_share():.0f}%{rest}", fontsize=9)
    labels = [*(f"cell {int(c)}" for c in moved.sources), "rest", "whole step"]
    changes = np.vstack([moved.parts, moved.rest, moved.total])
    width = 0.8 / len(ACTION_NAMES)
    x = np.arange(len(labels))
    for a, name in enumerate(ACTION_NAMES):
        bars.bar(x + (a - (len(ACTION_NAMES) - 1) / 2) * width, changes[:, a], width, label=name, gid=f"action {name}")
    bars.axhline(0, color="#555555", linewidth=0.8)
    bars.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    bars.set(ylabel=f"Δ log π(a | cell {moved.state})")
    bars.legend(fontsize=8, ncol=len(ACTION_NAMES))
    fig.suptitle(f"{field.rule}: one {field.optimizer} step, where cell {moved.state}'s change comes from "
                 "(means over seeds)", fontsize=10)  # fmt: skip
    return fig


def _outline(row: int, col: int, colour: str, width: float, gid: str | None = None):
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.47, row - 0.47), 0.94, 0.94, fill=False, edgecolor=colour, linewidth=width, zorder=6,
                     gid=gid)  # fmt: skip
