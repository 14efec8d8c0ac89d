"""``iftgym maps``: the Frozen Lake map catalogue, each map drawn."""

from __future__ import annotations

import argparse

from rich.console import Console


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym maps`` and its options."""
    sub.add_parser("maps", help="list the Frozen Lake map catalogue").set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym maps`` with parsed ``args``, printing to ``console``."""
    from iftgym.explain.tables import catalogue_table

    console.print(catalogue_table())
