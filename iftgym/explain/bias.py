"""Where SFT's optimism lies on the map, and the ``iftgym bias`` command that shows it step by step.

**Bias map.** For every non-terminal cell ``s`` that can be reached from the start, let ``a*(s)`` be the optimal
action there (:meth:`FrozenLakeMDP.optimal_policy`, first best action) and ``t(s)`` the fewest moves that can
reach ``s`` (breadth-first distance from S; holes and goals are not passed through). The map shows

    ``bias(s) = pi(a*(s) | s) - P(the policy's rollout is at s at time t(s)) * pi(a*(s) | s)``

in probability space (``space="prob"``), or ``-log P(at s at time t(s))`` in log space (``space="log"``): the
teacher-forced estimate minus the exact on-policy one, if a demonstration passed through ``s`` as early as
possible. On a deterministic map, the cells of the optimal demonstration get exactly the per-step bias of
:func:`iftgym.estimators.estimator_bias` with ``reach="state"`` (a shortest route visits each cell at ``t(s)``).
Terminal and unreachable cells are NaN. Both spaces are >= 0: SFT never under-estimates.

**Summary.** :func:`iftgym.estimators.demonstration_log_bias` sums the log-bias along the optimal demonstration,
one number per seed; the compare command shows it as a column.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from iftgym.arguments import add_dynamics_arguments
from iftgym.compare import CompareConfig, training_data
from iftgym.estimators import PolicyLike, demonstration_log_bias, policy_matrix, preference_estimates
from iftgym.explain.figures import draw_tiles, save_figure
from iftgym.frozen_lake import ACTION_ARROWS, ACTION_NAMES, FrozenLakeMDP
from iftgym.policies import MLPPolicy
from iftgym.rules import make_recipe
from iftgym.train import TrainConfig, train
from iftgym.validate import one_of

SPACES = ("prob", "log")


def first_arrival_times(world: FrozenLakeMDP) -> np.ndarray:
    """``(S,)``: the fewest moves from the start to each cell (NaN where no route leads); terminal cells are
    entered but never left."""
    moves = (world.P.sum(axis=1) > 0) & ~world.terminal[:, None]  # moves[s, s2]: some action leads s -> s2
    times = np.full(world.n_states, np.nan)
    frontier = np.arange(world.n_states) == world.start
    t = 0
    while frontier.any():
        times[frontier] = t
        frontier = moves[frontier].any(axis=0) & np.isnan(times)
        t += 1
    return times


def bias_map(policy: PolicyLike, world: FrozenLakeMDP, gamma: float = 0.95, space: str = "prob") -> np.ndarray:
    """``(K, nrow, ncol)``: per cell, the teacher-forced estimate minus the exact on-policy one (module doc)."""
    one_of("space", space, SPACES)
    matrices = policy_matrix(policy)
    best = world.optimal_policy(gamma).argmax(axis=1)
    times = first_arrival_times(world)
    cells = np.flatnonzero(~world.terminal & ~np.isnan(times))
    arrival = times[cells].astype(int)
    out = np.full((matrices.shape[0], world.n_states), np.nan)
    for k, matrix in enumerate(matrices):
        reached = world.state_distributions(matrix, int(arrival.max()))[arrival, cells]
        forced = matrix[cells, best[cells]]
        with np.errstate(divide="ignore"):
            out[k, cells] = forced * (1 - reached) if space == "prob" else -np.log(reached)
    return out.reshape(-1, world.nrow, world.ncol)


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


# -- the ``iftgym bias`` command -----------------------------------------------------------------------------
def cmd_bias(args: argparse.Namespace, console: Console) -> None:
    """Train one algorithm, then print every estimator along the optimal demonstration, step by step."""
    model = FrozenLakeMDP.from_map(args.map, slippery=args.slippery, success_rate=args.success_rate)
    rules = make_recipe(args.algo, {"ift": {"lam": args.lam}})
    config = TrainConfig(steps=args.steps, seed=args.seed)
    data = training_data(model, CompareConfig(gamma=args.gamma, demos=1))
    demo = model.optimal_demonstration(args.gamma, rng=0)
    policy = MLPPolicy(model.n_states, model.n_actions, seeds=[args.seed])
    train(policy, rules, model, data, config)
    est = preference_estimates(policy, model, demo, lam=args.lam)
    table = Table(
        title=f"{args.algo} on {args.map} ({args.steps} steps, seed {args.seed}"
        + (", slippery" if model.slippery else "")
        + "): preference for the optimal demonstration's action",
        caption=(
            "log-bias = log teacher-forced - log exact on-policy; on a deterministic map it equals the sum of the "
            "prefix losses (the identity)"
            if est.reach == "path"
            else "exact on-policy = P(rollout in this cell at this step) x pi: on slippery ice the log-bias is the "
            "-log of that state probability"
        ),
    )
    for column in ("step", "state", "action", "teacher-forced", f"IFT (λ={args.lam:g})", "exact on-policy",
                   "log-bias", "Σ prefix losses"):  # fmt: skip
        table.add_column(column, justify="right")
    log_bias = est.sft_bias.log[0]
    for n, (state, action) in enumerate(zip(demo.states, demo.actions)):
        row, col = divmod(int(state), model.ncol)
        table.add_row(
            str(n), f"({row},{col}) {model.tile(int(state))}", f"{ACTION_ARROWS[action]} {ACTION_NAMES[action]}",
            f"{est.teacher_forced[0, n]:.4f}", f"{est.ift[0, n]:.4f}", f"{est.exact[0, n]:.4g}",
            f"{log_bias[n]:.4f}", f"{est.prefix_loss[0, n]:.4f}",
        )  # fmt: skip
    console.print(table)
    total = float(demonstration_log_bias(model, policy, demo, est.reach)[0])
    console.print(f"summed log-bias along the demonstration (reach={est.reach!r}): [bold]{total:.4f}[/]")
    if args.png:
        path = plot_bias_maps({args.algo: bias_map(policy, model, args.gamma)}, model, args.png)
        console.print(f"bias map written to {path}")


def add_bias_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym bias``."""
    parser = sub.add_parser("bias", help="train one algorithm and show SFT's optimism along the demonstration")
    parser.add_argument("--map", default="paper", help="catalogue name or map file (default: paper)")
    parser.add_argument("--algo", default="sft", help="rule or recipe to train, e.g. sft, ift, sft+dpo (default: sft)")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="policy initialisation and training seed (default: 0)")
    add_dynamics_arguments(parser)
    parser.add_argument("--lam", type=float, default=0.2, help="IFT's lambda, for training IFT and the IFT column")
    parser.add_argument("--png", default=None, help="also draw the trained policy's bias map to this PNG file")
    parser.set_defaults(func=cmd_bias)
