"""The ``iftgym`` command line. Each sub-command is a small function; errors print one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from iftgym.frozen_lake import ACTION_ARROWS, FrozenLakeMDP
from iftgym.maps import catalogue, catalogue_description

TILE_STYLES = {"S": "bold blue", "F": "white", "H": "bold white on grey23", "G": "bold green"}


class UsageError(ValueError):
    """Bad command-line input; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(message)


def draw_map(model: FrozenLakeMDP, values: np.ndarray | None = None, policy: np.ndarray | None = None) -> Text:
    """The map as rich text; with ``values`` and ``policy``, each cell shows its value and greedy arrows."""
    text = Text()
    vmax = float(values.max()) if values is not None and values.max() > 0 else 1.0
    for row in range(model.nrow):
        for col in range(model.ncol):
            s = row * model.ncol + col
            tile = model.tile(s)
            if values is None:
                text.append(f"{tile} ", style=TILE_STYLES[tile])
                continue
            if tile in "HG":
                text.append(f" {tile:^6}", style=TILE_STYLES[tile])
                continue
            best = policy[s] >= policy[s].max() - 1e-9
            arrows = "".join(a for a, b in zip(ACTION_ARROWS, best) if b)
            shade = int(40 + 200 * values[s] / vmax)
            text.append(
                f"{arrows:<2}{values[s]:.2f}"[:6].rjust(7), style=f"black on rgb({255 - shade},255,{255 - shade})"
            )
        text.append("\n")
    return text


def cmd_maps(args: argparse.Namespace, console: Console) -> None:
    """List the map catalogue with each map drawn."""
    table = Table(title="Frozen Lake map catalogue", show_lines=True)
    for column in ("name", "size", "map", "optimal / second route", "about"):
        table.add_column(column)
    for name, desc in catalogue().items():
        model = FrozenLakeMDP.from_map(desc)
        second = model.suboptimal_route()
        routes = f"{len(model.optimal_route()) - 1} / {len(second) - 1 if second else '-'} moves"
        table.add_row(name, f"{model.nrow}x{model.ncol}", draw_map(model), routes, catalogue_description(name))
    console.print(table)


def cmd_solve(args: argparse.Namespace, console: Console) -> None:
    """Print optimal values with policy arrows and the optimal success probability."""
    model = FrozenLakeMDP.from_map(args.map, slippery=args.slippery, success_rate=args.success_rate)
    values, _, policy = model.value_iteration(args.gamma)
    console.print(
        f"[bold]{args.map}[/] {model.nrow}x{model.ncol}, slippery={model.slippery}"
        + (f" (success_rate={model.success_rate:.3g})" if model.slippery else "")
        + f", gamma={args.gamma}: optimal V with greedy arrows (ties show every best action)"
    )
    console.print(draw_map(model, values, policy))
    console.print(f"optimal success probability from S: [bold]{model.success_probability(policy):.6f}[/]")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="iftgym", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("maps", help="list the Frozen Lake map catalogue").set_defaults(func=cmd_maps)

    solve = sub.add_parser("solve", help="solve a map exactly and show V*, the optimal policy and success")
    solve.add_argument("--map", default="paper", help="catalogue name or map file (default: paper)")
    solve.add_argument("--slippery", action="store_true", help="Gymnasium's is_slippery dynamics")
    solve.add_argument("--success-rate", type=float, default=1 / 3, help="intended-move probability when slippery")
    solve.add_argument("--gamma", type=float, default=0.95, help="discount in [0, 1) (default: 0.95)")
    solve.set_defaults(func=cmd_solve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iftgym`` console script."""
    console = Console()
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace, Console], None] = args.func
        func(args, console)
    except (ValueError, OSError) as err:
        print(f"iftgym: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iftgym: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
