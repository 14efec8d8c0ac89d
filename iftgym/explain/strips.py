"""Figures of a comparison in a world other than Frozen Lake, drawn from its ``results.json`` data: training curves
and, for tokens, per-token preference strips.

Built with matplotlib's object API (no pyplot), saved atomically as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from iftgym.experiments.results import CompareResult, WorldResult
from iftgym.explain.canvas import save_figure
from iftgym.io import safe_name

ESTIMATES = ("teacher_forced", "ift", "on_policy")
ESTIMATE_LABELS = {"teacher_forced": "teacher-forced", "ift": "IFT estimate", "on_policy": "on-policy"}


def draw_strips(strips: list[dict[str, Any]], algo: str) -> Figure:
    """One panel per example: the three estimates (mean over seeds) at each answer token, on one 0-1 scale."""
    width = max(len(s["tokens"]) for s in strips)
    fig = Figure(figsize=(1.2 + 0.55 * width, 1.3 * len(strips) + 0.6), layout="constrained")
    axes = fig.subplots(len(strips), 1, squeeze=False)[:, 0]
    for ax, strip in zip(axes, strips):
        values = np.array([np.mean(strip[name], axis=0) for name in ESTIMATES])
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.5 else "white")  # fmt: skip
        ax.set_yticks(range(len(ESTIMATES)), [ESTIMATE_LABELS[n] for n in ESTIMATES], fontsize=8)
        ax.set_xticks(range(len(strip["tokens"])), strip["tokens"], fontsize=8)
        ax.set_title(f"prompt {strip['prompt']!r}", fontsize=9, loc="left")
    fig.colorbar(image, ax=list(axes), label="probability of the target token", shrink=0.8)
    fig.suptitle(f"{algo}: per-token preference estimates (mean over seeds)", fontsize=10)
    return fig


def draw_curves(entry: WorldResult) -> Figure:
    """The training loss and every curve metric (each world's evaluations: greedy exact match and the probability of
    the target for tokens) against steps, one line per algorithm (means over seeds)."""
    trained = entry.trained()
    metrics = list(dict.fromkeys(key for run in trained.values() for key in run.curves if key != "steps"))
    labels = {key: metric.label for key, metric in entry.metrics.items()}
    fig = Figure(figsize=(4.2 * (1 + len(metrics)), 3.6), layout="constrained")
    loss_ax, *metric_axes = fig.subplots(1, 1 + len(metrics), squeeze=False)[0]
    for algo, run in trained.items():
        loss = run.history.get("loss")
        if loss:
            loss_ax.plot(np.arange(1, len(loss) + 1), loss, label=algo)
        for ax, key in zip(metric_axes, metrics):
            if key in run.curves:
                ax.plot(run.curves["steps"], np.mean(run.curves[key], axis=0), marker="o", label=algo)
    loss_ax.set(xlabel="step", ylabel="loss (mean over seeds)", title="training loss")
    for ax, key in zip(metric_axes, metrics):
        ax.set(xlabel="step", ylabel=labels.get(key, key), title=f"{entry.name}: {labels.get(key, key)}")
    for ax in (loss_ax, *metric_axes):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig


def draw_world_figures(results: CompareResult, out_dir: str | Path) -> list[Path]:
    """A comparison in a world other than Frozen Lake, saved in ``out_dir``: ``curves.png`` and, where the world
    draws them (tokens), one ``strips_<algo>.png`` per algorithm (its name made safe: ``strips_sft-dpo.png``);
    returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entry = results.maps[0]
    paths = [save_figure(draw_curves(entry), out / "curves.png")]
    stems: set[str] = set()
    for algo, run in entry.trained().items():
        if run.strips:
            stems.add(stem := safe_name(f"strips_{algo}", stems))
            paths.append(save_figure(draw_strips(run.strips, algo), out / f"{stem}.png"))
    return paths
