"""Figures of a comparison, drawn from its ``results.json`` alone (so ``iftgym plot`` never retrains).

Figures are built with matplotlib's object API (no pyplot), so drawing needs no display and never changes the
backend of a notebook that imports this module.

* preference-estimation maps: in every cell, one arrow per action, its length the policy's probability;
* value maps: V of each learned policy (exact, averaged over seeds) with greedy arrows, beside V*;
* explored-grid maps: discounted occupancy of each policy, on one logarithmic colour scale, titled with the
  number of cells visited at least ``EXPLORED_THRESHOLD``;
* training curves: MSE to the optimal policy and success probability, mean with a 95% confidence band;
* update maps (a run with ``--update-maps``): what each rule's next optimiser step does to log pi(a|s) in every cell at
  the start, middle and end of training, from the mean fields kept in the results
  (:func:`iftgym.explain.update.draw_update_maps`).

Holes are dark, S is blue and G green in every panel; panels of a figure share one colour scale.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import LogFormatter
from matplotlib.transforms import Bbox

from iftgym.experiments.results import CompareResult, WorldResult
from iftgym.explain.canvas import draw_arrows, draw_tiles, figure_png, panel_grid, save_figure, set_arrows, tight_crop
from iftgym.io import safe_name
from iftgym.metrics.stats import mean_ci
from iftgym.validate import one_of
from iftgym.worlds.frozen_lake.model import EXPLORED_THRESHOLD, FrozenLakeMDP


def _trained(entry: WorldResult) -> dict[str, np.ndarray]:
    """Each algorithm's policy matrices ``(K, S, A)``, where it has them."""
    return {a: np.array(r.policies) for a, r in entry.trained().items() if r.policies is not None}


def preference_maps(entry: WorldResult, model: FrozenLakeMDP) -> Figure:
    """What each algorithm's policy prefers in every cell (mean over seeds), beside the optimal policy."""
    return _filled("preference", entry, model)


def value_maps(entry: WorldResult, model: FrozenLakeMDP, gamma: float) -> Figure:
    """Exact V of each learned policy (mean over seeds) with greedy arrows, beside V* on the same scale."""
    return _filled("values", entry, model, gamma)


def explored_maps(entry: WorldResult, model: FrozenLakeMDP, gamma: float) -> Figure:
    """Discounted occupancy of each policy (mean over seeds), one logarithmic colour scale for all panels."""
    return _filled("explored", entry, model, gamma)


# Each map figure is built for a map and its panels (tiles, axes, titles' places, colour bar), then filled with a
# comparison's numbers (arrows, colours, titles). The explorers refill the figures they drew last time
# (map_figure_png): a scrub changes numbers only, and building is about half of a figure's time.
Filler = Callable[[WorldResult, FrozenLakeMDP], None]


def _panels(entry: WorldResult, optimal: str) -> tuple[str, ...]:
    """The panels' names: the optimal policy's, then each algorithm with policies."""
    return (optimal, *_trained(entry))


def _build_preference(model: FrozenLakeMDP, names: tuple[str, ...], gamma: float) -> tuple[Figure, Filler]:
    fig, axes = panel_grid(len(names))
    arrows = []
    for ax, name in zip(axes, names):
        ax.imshow(np.ones((model.nrow, model.ncol, 3)), zorder=0)
        draw_tiles(ax, model)
        arrows.append(draw_arrows(ax, model, np.zeros((model.n_states, model.n_actions))))
        ax.set_title(name)

    def fill(entry: WorldResult, model: FrozenLakeMDP) -> None:
        policies = [np.array(entry.grid.optimal_policy), *(p.mean(0) for p in _trained(entry).values())]
        for quiver, policy in zip(arrows, policies):
            set_arrows(quiver, model, policy)
        fig.suptitle(f"{entry.name}: action probabilities per cell (arrow length = probability, mean over seeds)")

    return fig, fill


def _build_values(model: FrozenLakeMDP, names: tuple[str, ...], gamma: float) -> tuple[Figure, Filler]:
    fig, axes = panel_grid(len(names))
    images, arrows = [], []
    for ax in axes:
        images.append(ax.imshow(np.zeros((model.nrow, model.ncol)), cmap="viridis", vmin=0, vmax=1, zorder=0))
        draw_tiles(ax, model)
        arrows.append(draw_arrows(ax, model, np.zeros((model.n_states, model.n_actions)), greedy_only=True))
    fig.colorbar(images[-1], ax=axes, shrink=0.7, label=f"V (gamma={gamma})")

    def fill(entry: WorldResult, model: FrozenLakeMDP) -> None:
        panels = [(np.array(entry.grid.optimal_values), np.array(entry.grid.optimal_policy))]
        panels += [(model.evaluate(p, gamma).mean(axis=0), p.mean(0)) for p in _trained(entry).values()]
        vmax = max(float(v.max()) for v, _ in panels) or 1.0
        for ax, name, image, quiver, (values, policy) in zip(axes, names, images, arrows, panels):
            image.set_data(values.reshape(model.nrow, model.ncol))
            image.set_clim(0, vmax)
            set_arrows(quiver, model, policy, greedy_only=True)
            ax.set_title(f"{name}  V(S)={values[model.start]:.3f}")
        fig.suptitle(f"{entry.name}: exact state values with greedy actions")

    return fig, fill


def _build_explored(model: FrozenLakeMDP, names: tuple[str, ...], gamma: float) -> tuple[Figure, Filler]:
    fig, axes = panel_grid(len(names))
    images = []
    for ax in axes:
        images.append(ax.imshow(np.ones((model.nrow, model.ncol)), cmap="magma", norm=LogNorm(1e-4, 1), zorder=0))
        draw_tiles(ax, model, label=True)
    # powers of ten written as plain text, without minor ticks: a quarter of the figure's drawing time less
    bar = fig.colorbar(images[-1], ax=axes, shrink=0.7, label="discounted visits",
                       format=LogFormatter(labelOnlyBase=True))  # fmt: skip

    def fill(entry: WorldResult, model: FrozenLakeMDP) -> None:
        panels = [model.occupancy(np.array(entry.grid.optimal_policy), gamma)]
        panels += [model.occupancy(p, gamma).mean(axis=0) for p in _trained(entry).values()]
        vmax = max(float(o.max()) for o in panels)
        vmin = max(vmax * 1e-4, 1e-6)
        for ax, name, image, occupancy in zip(axes, names, images, panels):
            image.set_data(np.clip(occupancy, vmin, None).reshape(model.nrow, model.ncol))
            image.set_clim(vmin, vmax)
            ax.set_title(f"{name}  ({int((occupancy >= EXPLORED_THRESHOLD).sum())} cells)")
        bar.minorticks_off()  # the colour bar's new scale brings them back
        fig.suptitle(f"{entry.name}: explored grid (expected discounted visits per cell)")

    return fig, fill


BUILDERS = {"preference": (_build_preference, "optimal (DP)"), "values": (_build_values, "V* (optimal)"),
            "explored": (_build_explored, "optimal (DP)")}  # fmt: skip


def _built(kind: str, entry: WorldResult, model: FrozenLakeMDP, gamma: float) -> tuple[Figure, Filler]:
    """A new map figure of ``kind`` for ``entry``'s map and panels, and its filler."""
    build, optimal = BUILDERS[kind]
    return build(model, _panels(entry, optimal), gamma)


def _filled(kind: str, entry: WorldResult, model: FrozenLakeMDP, gamma: float | None = None) -> Figure:
    """A new map figure of ``kind`` filled with ``entry``'s numbers."""
    fig, fill = _built(kind, entry, model, model.gamma if gamma is None else gamma)
    fill(entry, model)
    return fig


def why_maps(entry: WorldResult, model: FrozenLakeMDP, baseline: str) -> Figure | None:
    """Where each algorithm wins or loses against ``baseline``: per cell, its share of the MSE difference (mean
    over seeds of the cell's squared-error difference, over the number of non-terminal cells, so the cells sum to
    the difference of the MSEs), demonstrated cells outlined. ``None`` when there is nothing to compare."""
    trained = _trained(entry)
    if baseline not in trained or len(trained) < 2:
        return None
    optimal, alive = np.array(entry.grid.optimal_policy), ~model.terminal
    errors = {a: ((p - optimal) ** 2).mean(-1).mean(0) * alive / alive.sum() for a, p in trained.items()}
    shares = {a: e - errors[baseline] for a, e in errors.items() if a != baseline}
    bound = max(float(np.abs(share).max()) for share in shares.values()) or 1.0
    demonstrated = entry.grid.demonstrated
    fig, axes = panel_grid(len(shares))
    for ax, (algo, share) in zip(axes, shares.items()):
        image = ax.imshow(share.reshape(model.nrow, model.ncol), cmap="RdBu_r", vmin=-bound, vmax=bound, zorder=0)
        draw_tiles(ax, model)
        rows, cols = np.divmod(np.asarray(demonstrated, dtype=int), model.ncol)
        ax.add_collection(PatchCollection([Rectangle((c - 0.45, r - 0.45), 0.9, 0.9) for r, c in zip(rows, cols)],
                                          facecolor="none", edgecolor="black", linewidth=1.6, zorder=3))  # fmt: skip
        ax.set_title(f"{algo}: ΔMSE {share.sum():+.4f}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.7, label="share of ΔMSE (red: worse than the baseline)")
    fig.suptitle(
        f"{entry.name}: where each rule gains (blue) or loses (red) MSE against {baseline}, per cell "
        "(outlined: demonstrated cells)"
    )
    return fig


def training_curves(entry: WorldResult) -> Figure:
    """MSE to the optimal policy and success probability during training, mean and 95% CI over seeds."""
    fig = Figure(figsize=(11, 4))
    ax_mse, ax_success = fig.subplots(1, 2)
    for algo, result in entry.trained().items():
        curves = result.curves
        if not curves.get("steps"):
            continue
        steps = np.array(curves["steps"])
        for ax, key in ((ax_mse, "mse"), (ax_success, "success")):
            per_seed = np.array(curves[key])  # (K, evaluations)
            stats = np.array([mean_ci(per_seed[:, i]) for i in range(per_seed.shape[1])])
            (line,) = ax.plot(steps, stats[:, 0], label=algo)
            ax.fill_between(steps, stats[:, 1], stats[:, 2], color=line.get_color(), alpha=0.2)
    ax_mse.set(xlabel="optimiser step", ylabel="MSE to optimal policy", yscale="log", title="policy error")
    ax_success.set(xlabel="optimiser step", ylabel="P(reach G)", ylim=(-0.02, 1.02), title="success probability")
    ax_success.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{entry.name}: training curves (mean, 95% CI over seeds)")
    return fig


KEPT_FIGURES = 8  # the map figures a process keeps to refill (an explorer's three, for a few maps and rule sets)
# by kind, map, gamma and panels: the figure (None for the curves, drawn anew each time), its filler and its crop
_kept: dict[tuple, tuple[Figure | None, Filler | None, Bbox]] = {}


def map_figure_png(kind: str, entry: WorldResult, model: FrozenLakeMDP) -> bytes:
    """One of a Frozen Lake comparison's figures (``"preference"``, ``"values"``, ``"explored"`` or ``"curves"``) as
    PNG bytes, cropped like a tight bounding box. A top-level function, so that the explorers draw their figures in
    their worker processes at once; each process keeps the last ``KEPT_FIGURES`` map figures it drew and refills one
    drawn for the same map and panels (built once, and cropped to the box found the first time, padded, so drawn
    once), which draws what a new one would."""
    one_of("kind", kind, ("preference", "values", "explored", "curves"))
    key = (kind, tuple(model.desc), model.gamma, tuple(_trained(entry)))
    fig, fill, crop = _kept.pop(key, (None, None, None))  # put back below, as the newest
    if kind == "curves":  # the curves are of a whole run: drawn anew, cropped as before
        fig = training_curves(entry)
    elif fig is None:
        fig, fill = _built(kind, entry, model, model.gamma)
    if fill is not None:
        fill(entry, model)
    crop = crop or tight_crop(fig)
    _kept[key] = (fig if fill else None, fill, crop)
    while len(_kept) > KEPT_FIGURES:
        del _kept[next(iter(_kept))]  # the oldest
    return figure_png(fig, crop=crop)


LAID_OUT = {"update"}  # the figures their functions lay out whole: saved without a tight bounding box


def update_maps_figure(entry: WorldResult, model: FrozenLakeMDP) -> Figure | None:
    """The update maps of a run with ``--update-maps``: a row per training point (start, middle, end), a panel per
    algorithm that has a field there (an algorithm without one, such as sb3-ppo, is left out), drawn from the mean
    fields in ``AlgorithmResult.update``; ``None`` when the run kept none."""
    from iftgym.explain.update import draw_update_maps  # it draws with this module's tiles
    from iftgym.metrics.update import FieldSummary

    kept = {algo: [p for p in run.update["points"] if "field" in p] for algo, run in entry.trained().items()
            if run.update is not None and "points" in run.update}  # fmt: skip
    steps = sorted({p["step"] for points in kept.values() for p in points})
    if not steps:
        return None
    rows = {}
    for step in steps:
        where = "start" if step == steps[0] else "end" if step == steps[-1] else "middle"
        rows[f"step {step} ({where})"] = {
            algo: FieldSummary.from_json(p["field"], p["rule"], p["optimizer"], p["lr"])
            for algo, points in kept.items() for p in points if p["step"] == step
        }  # fmt: skip
    demonstrated = np.isin(np.arange(model.n_states), entry.grid.demonstrated)
    return draw_update_maps(rows, model, demonstrated, title=(
        f"{entry.name}: what each rule's next optimiser step does to log π(a|s), at the start, middle and end of "
        "training\n(mean over seeds; red arrows: reinforced, blue: suppressed; outlined: demonstrated cells; bar: "
        "the change from the cell's own loss vs carried from other cells)"))  # fmt: skip


def file_stem(name: str, taken: set[str] = frozenset()) -> str:
    """A file name made from a map's name: its last path component without ``.txt``, made safe by
    :func:`iftgym.io.safe_name` — so a map given as a path (``/data/x.txt``, ``../../y``) names its figures inside
    the output folder."""
    return safe_name(re.sub(r"\.txt$", "", Path(name).name), taken, default="map")


def draw_figures(results: CompareResult, out_dir: str | os.PathLike, max_maps: int = 3) -> list[Path]:
    """Every figure of a Frozen Lake comparison, for its first ``max_maps`` maps, saved in ``out_dir``; returns the
    PNG paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = results.config
    written: list[Path] = []
    stems: set[str] = set()
    for entry in results.maps[:max_maps]:
        model = FrozenLakeMDP.from_map(entry.grid.rows, config["slippery"], config["success_rate"], config["gamma"])
        name = file_stem(entry.name, stems)
        stems.add(name)
        figures = {
            "preference": preference_maps(entry, model),
            "values": value_maps(entry, model, config["gamma"]),
            "explored": explored_maps(entry, model, config["gamma"]),
            "curves": training_curves(entry),
            "why": why_maps(entry, model, config.get("baseline") or "sft"),
            "update": update_maps_figure(entry, model),
        }
        written += [save_figure(fig, out / f"{name}-{kind}.png", tight=kind not in LAID_OUT)
                    for kind, fig in figures.items() if fig is not None]  # fmt: skip
    return written
