"""``iftgym solve``: a map solved exactly: optimal values with policy arrows and the optimal success probability."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape

from iftgym.cli.common import add_dynamics_arguments, dynamics


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym solve`` and its options."""
    parser = sub.add_parser("solve", help="solve a map exactly and show V*, the optimal policy and success")
    parser.add_argument("--map", default="paper", help="catalogue name or map file (default: paper)")
    add_dynamics_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym solve`` with parsed ``args``, printing to ``console``."""
    from iftgym.explain.tables import draw_map
    from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

    model = FrozenLakeMDP.from_map(args.map, *dynamics(args))
    values, _, policy = model.value_iteration()
    console.print(
        f"[bold]{escape(args.map)}[/] {model.nrow}x{model.ncol}, slippery={model.slippery}"
        + (f" (success_rate={model.success_rate:.3g})" if model.slippery else "")
        + f", gamma={args.gamma}: optimal V with greedy arrows (ties show every best action)"
    )
    console.print(draw_map(model, values, policy))
    console.print(f"optimal success probability from S: [bold]{model.success_probability(policy):.6f}[/]")
