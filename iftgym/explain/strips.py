"""Figures of a tiny-LM run, drawn from its ``results.json`` data: per-token preference strips and training curves.

Built with matplotlib's object API (no pyplot), saved atomically as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from iftgym.explain.figures import save_figure
from iftgym.io import safe_name

ESTIMATES = ("teacher_forced", "ift", "on_policy")
ESTIMATE_LABELS = {"teacher_forced": "teacher-forced", "ift": "IFT estimate", "on_policy": "on-policy"}


def draw_strips(entry: dict[str, Any], algo: str, path: Path) -> Path:
    """One panel per example: the three estimates (mean over seeds) at each answer token, on one 0-1 scale."""
    strips = entry["strips"]
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
    return save_figure(fig, path)


def draw_curves(results: dict[str, Any], path: Path) -> Path:
    """Training loss and greedy test exact match against steps, one line per algorithm (means over seeds)."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    loss_ax, score_ax = fig.subplots(1, 2)
    for algo, entry in results["algorithms"].items():
        if "loss" in entry["history"]:
            loss_ax.plot(np.arange(1, len(entry["history"]["loss"]) + 1), entry["history"]["loss"], label=algo)
        curve = entry["curve"]
        score_ax.plot(curve["steps"], np.mean(curve["greedy_test"], axis=1), marker="o", label=algo)
    loss_ax.set(xlabel="step", ylabel="loss (mean over seeds)", title="training loss")
    score_ax.set(xlabel="step", ylabel="greedy test reward", title=f"{results['task']['name']}: exact match / success",
                 ylim=(-0.02, 1.02))  # fmt: skip
    for ax in (loss_ax, score_ax):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def draw_lm_figures(results: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``curves.png`` and one ``strips_<algo>.png`` per algorithm in ``out_dir`` (its name made safe:
    ``strips_sft-dpo.png``); returns the paths."""
    out = Path(out_dir)
    paths = [draw_curves(results, out / "curves.png")]
    stems: set[str] = set()
    for algo, entry in results["algorithms"].items():
        stems.add(stem := safe_name(f"strips_{algo}", stems))
        paths.append(draw_strips(entry, algo, out / f"{stem}.png"))
    return paths
