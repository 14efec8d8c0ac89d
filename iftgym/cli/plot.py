"""``iftgym plot``: the figures of a saved comparison, redrawn without retraining."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from iftgym.cli.common import save_outputs, writable_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym plot`` and its options."""
    parser = sub.add_parser("plot", help="redraw the figures of a saved results.json without retraining")
    parser.add_argument("results", help="path of a results.json written by iftgym compare")
    parser.add_argument("--out", default=None, help="output folder (default: the results file's folder)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym plot`` with parsed ``args``, printing to ``console``."""
    from iftgym.experiments.compare import load_results
    from iftgym.explain.figures import draw_figures
    from iftgym.explain.tables import compare_table

    results = load_results(args.results)
    out = writable_dir(args.out or str(Path(args.results).parent))
    for entry in results["maps"]:
        console.print(compare_table(entry))
    save_outputs(console, out, lambda folder: draw_figures(results, folder), inputs=[args.results])
