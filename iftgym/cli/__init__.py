"""The ``iftgym`` command line: one module per sub-command, each rendering what an experiment returns.

Every sub-command module has ``add_parser(subparsers)`` and ``run(args, console)``; heavy libraries (torch,
matplotlib) are imported inside ``run``, so ``iftgym --help`` starts fast. Errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from iftgym.cli import bias, compare, lm, maps, plot, solve
from iftgym.cli.common import Parser, UsageError

COMMANDS = (maps, solve, compare, plot, bias, lm)

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``iftgym`` parser with every sub-command."""
    parser = Parser(prog="iftgym", description="Fine-tuning rules on a workbench small enough to solve exactly.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iftgym`` console script."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # files and pipes get whole table rows instead of 80-column wrapping
        console = Console(width=140)
    try:
        args = build_parser().parse_args(argv)
        run: Callable[[argparse.Namespace, Console], None] = args.run
        run(args, console)
    except (ValueError, OSError) as err:
        print(f"iftgym: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iftgym: interrupted", file=sys.stderr)
        return 130
    return 0
