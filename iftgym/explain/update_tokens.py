"""Update strips: the pictures of :mod:`iftgym.metrics.update_tokens` — per rule, a strip over the answer positions
of a shown sequence: each position's target token (below), the loss weight the rule put on it (bars above), and the
tokens whose ``log pi`` one step raises most (reinforced: red, top rows) and lowers most (suppressed: blue, bottom
rows), coloured by the size of the change; a cell whose token is the position's target is written in bold."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from iftgym.experiments.results import CompareResult
from iftgym.io import safe_name
from iftgym.metrics.update_tokens import TOP, TokenStrip, TokenUpdate

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.gridspec import SubplotSpec

    from iftgym.world import World

POSITIVE_WEIGHT, NEGATIVE_WEIGHT = "#34495e", "#e67e22"
SPACES = {" ": "␣", "\n": "⏎", "\t": "⇥"}


def shown_token(text: str) -> str:
    """A token's text as a strip writes it: white space made visible, an empty token as ``∅``."""
    return "".join(SPACES.get(c, c) for c in text) or "∅"


def draw_token_strip(weight_ax: Axes, token_ax: Axes, strip: TokenStrip, top: int = TOP) -> float:
    """Draw one strip: its loss weights as bars on ``weight_ax`` and its ``top`` reinforced and suppressed tokens per
    position on ``token_ax``, coloured by their change over the strip's largest (red: raised, blue: lowered);
    returns that largest change (0: no token moves)."""
    n = len(strip.tokens)
    reinforced, suppressed = _table(strip.reinforced, top, n), _table(strip.suppressed, top, n)
    changes = np.concatenate([reinforced[1], suppressed[1][::-1]])  # (2 top, n): most raised first, most lowered last
    labels = reinforced[0] + suppressed[0][::-1]
    largest = float(np.nanmax(np.abs(changes), initial=0.0))
    scale = largest or 1.0
    image = token_ax.imshow(changes / scale, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    image.set_gid("changes")
    for (row, col), text in np.ndenumerate(np.array(labels, dtype=object)):
        if text is not None:
            bold = text == strip.tokens[col]
            token_ax.text(col, row, shown_token(text), ha="center", va="center", fontsize=8,
                          gid="reinforced" if row < top else "suppressed", weight="bold" if bold else "normal",
                          color="white" if abs(changes[row, col]) > 0.6 * scale else "black")  # fmt: skip
    if largest == 0:
        token_ax.text((n - 1) / 2, (top - 1) / 2, "no token moves", ha="center", va="center", fontsize=8,
                      color="#5d6d7e")  # fmt: skip
    token_ax.axhline(top - 0.5, color="black", linewidth=0.8)
    token_ax.set_xticks(range(n), [shown_token(t) for t in strip.tokens], fontsize=9)
    token_ax.set_yticks([top / 2 - 0.5, 1.5 * top - 0.5], ["raised", "lowered"], fontsize=8)
    token_ax.set_xlabel("target token at each answer position", fontsize=8)
    bars = weight_ax.bar(range(n), strip.weights, width=0.7,
                         color=[POSITIVE_WEIGHT if w >= 0 else NEGATIVE_WEIGHT for w in strip.weights])  # fmt: skip
    for bar in bars:
        bar.set_gid("weight")
    weight_ax.axhline(0, color="#9aa5b1", linewidth=0.6)
    if not np.any(strip.weights):
        weight_ax.text(0.5, 0.5, "the step trains none of these targets", transform=weight_ax.transAxes, ha="center",
                       va="center", fontsize=8, color="#5d6d7e")  # fmt: skip
    weight_ax.set_xlim(-0.5, n - 0.5)
    weight_ax.set_xticks([])
    weight_ax.tick_params(labelsize=7)
    weight_ax.set_ylabel("loss\nweight", fontsize=8)
    return largest


def _table(moved: tuple[tuple[tuple[str, float], ...], ...], top: int, n: int) -> tuple[list, np.ndarray]:
    """``top`` rows of labels (``None`` where a position moves fewer tokens that way) and ``(top, n)`` changes (NaN
    there) of a strip's reinforced or suppressed tokens, position by position."""
    labels = [[None] * n for _ in range(top)]
    changes = np.full((top, n), np.nan)
    for col, pairs in enumerate(moved):
        for row, (text, change) in enumerate(pairs[:top]):
            labels[row][col], changes[row, col] = text, change
    return labels, changes


def draw_token_updates(
    rows: Mapping[str, Mapping[str, TokenStrip]], top: int = TOP, title: str | None = None
) -> Figure:
    """Update strips over training: one row of panels per label of ``rows`` (a training point, or a point and a
    shown prompt: label -> {rule label: strip}), one column per rule label, each panel drawn by
    :func:`draw_token_strip` on a colour scale of its own (its largest change, named in its title: a fresh
    optimiser's first step and a late one differ by orders of magnitude). A rule missing in a row leaves its panel
    empty."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(label for strips in rows.values() for label in strips))
    if not labels:
        raise ValueError("no update strip to draw: expected at least one")
    width = max(len(strip.tokens) for strips in rows.values() for strip in strips.values())
    height = (0.28 * 2 * top + 1.6) * len(rows) + 1.2
    fig = Figure(figsize=(max(3.0, 0.55 * width + 1.2) * len(labels) + 1.0, height))
    # the two-line title and the first row's two-line panel titles take about 1.1 inches above the panels
    grid = fig.add_gridspec(len(rows), len(labels), right=0.9, top=1 - 1.1 / height, hspace=0.75, wspace=0.35)
    for r, (row_label, strips) in enumerate(rows.items()):
        box = grid[r, 0].get_position(fig)
        fig.text(max(box.x0 - 0.085, 0.01), (box.y0 + box.y1) / 2, row_label, rotation=90, ha="center", va="center",
                 fontsize=10)  # fmt: skip
        for c, label in enumerate(labels):
            if label not in strips:
                continue
            weight_ax, token_ax = _panel(fig, grid[r, c], top)
            strip = strips[label]
            scale = draw_token_strip(weight_ax, token_ax, strip, top)
            name = label if strip.rule == label else f"{label} ({strip.rule})"
            weight_ax.set_title(f"{name}: {strip.prompt!r}\nlargest |Δ| {scale:.1e}", fontsize=9)
    fig.colorbar(ScalarMappable(norm=Normalize(-1, 1), cmap="RdBu_r"), cax=fig.add_axes((0.92, 0.2, 0.012, 0.6)),
                 label="Δ log π(token | prefix) / the panel's largest")  # fmt: skip
    fig.suptitle(title or "the next optimiser step of each rule over training: the most raised and lowered tokens at "
                 "each answer position\n(mean over seeds; bold: the target) and the loss weight -dL/d log π(target)",
                 fontsize=10)  # fmt: skip
    return fig


def _panel(fig: Figure, spec: SubplotSpec, top: int) -> tuple[Axes, Axes]:
    """A panel's two axes: the weight bars above the token table."""
    inner = spec.subgridspec(2, 1, height_ratios=[1, 0.45 * top], hspace=0.08)
    return fig.add_subplot(inner[0]), fig.add_subplot(inner[1])


def draw_token_update(
    update: TokenUpdate | Mapping[str, TokenUpdate], world: World, top: int = TOP, which: str = "predicted"
) -> Figure:
    """The strips of one step of one rule or several by label (a row per shown prompt, a column per rule), their
    tokens named by ``world`` (its ``action_name``) and chosen on the ``which`` change."""
    updates = {update.rule: update} if isinstance(update, TokenUpdate) else dict(update)
    rows: dict[str, dict[str, TokenStrip]] = {}
    for label, one in updates.items():
        for strip in one.strips(world.action_name, top, which):
            rows.setdefault(repr(strip.prompt), {})[label] = strip
    first = next(iter(updates.values()), None)
    if first is None:
        raise ValueError("no update to draw: expected at least one")
    return draw_token_updates(rows, top, title=f"one {first.optimizer} step (lr {first.lr:g}): the most raised and "
                              f"lowered tokens ({which}) at each answer position\nand the loss weight "
                              "-dL/d log π(target) (mean over seeds; bold: the target)")  # fmt: skip


def update_strips_figure(results: CompareResult) -> Figure | None:
    """The update strips of a token-world comparison run with ``--update-maps`` (each algorithm's recorded points,
    a row per training point and shown prompt); ``None`` where no algorithm has any."""
    entry = results.maps[0]
    rows: dict[str, dict[str, TokenStrip]] = {}
    for algo, run in entry.trained().items():
        for point in (run.update or {}).get("points", []):
            for strip in point["strips"]:
                label = f"step {point['step']}" + (f", {strip['prompt']!r}" if len(point["strips"]) > 1 else "")
                rows.setdefault(label, {})[algo] = TokenStrip.from_json(strip, point["rule"])
    return draw_token_updates(rows) if rows else None


def draw_update_strip_figures(results: CompareResult, out_dir: str | Path) -> list[Path]:
    """``<task>-update.png`` in ``out_dir`` where the comparison recorded update strips (:func:`update_strips_figure`);
    returns the paths written."""
    from iftgym.explain.canvas import save_figure

    figure = update_strips_figure(results)
    if figure is None:
        return []
    return [save_figure(figure, Path(out_dir) / f"{safe_name(results.maps[0].name + '-update')}.png")]
