"""``iftgym plot``: the figures of a saved comparison, redrawn without retraining."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from iftgym.cli.common import save_outputs, writable_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym plot`` and its options."""
    parser = sub.add_parser(
        "plot", help="print the tables and redraw the figures of a saved results.json (any world) without retraining"
    )
    parser.add_argument("results", help="path of a results.json written by iftgym compare or iftgym lm")
    parser.add_argument("--out", default=None, help="output folder (default: the results file's folder)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym plot`` with parsed ``args``, printing to ``console``."""
    from iftgym.experiments.results import GRID, load_results
    from iftgym.explain.figures import draw_figures
    from iftgym.explain.strips import draw_world_figures
    from iftgym.explain.tables import comparison_tables
    from iftgym.explain.update_tokens import draw_update_strip_figures

    results = load_results(args.results)
    out = writable_dir(args.out or str(Path(args.results).parent))
    for table in comparison_tables(results):
        console.print(table)

    def draw(folder: Path) -> list[Path]:
        if results.world == GRID:
            return draw_figures(results, folder)
        return [*draw_world_figures(results, folder), *draw_update_strip_figures(results, folder)]

    save_outputs(console, out, draw, inputs=[args.results])
