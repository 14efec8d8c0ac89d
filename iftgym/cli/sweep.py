"""``iftgym sweep``: many comparisons over a grid of settings, on local cores or a Ray cluster, resumable; and
``iftgym sweep --report FOLDER``, the report rebuilt from finished cells."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from iftgym.cli.common import UsageError, load_plugins, writable_dir

REPORT = "report.json"  # the report's numbers, beside its figures


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym sweep`` and its options."""
    parser = sub.add_parser("sweep", help="comparisons over a grid of settings, resumable, on local cores or Ray")
    parser.add_argument("spec", nargs="?", default=None, help="a TOML sweep spec (see iftgym.experiments.sweep)")
    parser.add_argument("--out", default="runs/sweep", help="the sweep's folder (default: runs/sweep)")
    parser.add_argument("--report", default=None, metavar="FOLDER",
                        help="rebuild the report (tables, figures) from a sweep folder's finished cells")  # fmt: skip
    parser.add_argument("--backend", default="local", choices=["local", "ray"],
                        help="where cells run: local processes, or Ray tasks (pip install -e '.[ray]')")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes beside the main one (default: one per core but one)")  # fmt: skip
    parser.add_argument("--address", default=None, help="the Ray cluster's address (default: start a local one)")
    parser.add_argument("--metric", default=None,
                        help="the metric of the report's tables, heatmaps and curves (default: mse on frozen-lake, "
                        "the world's first metric elsewhere, e.g. target_test on tokens)")  # fmt: skip
    parser.add_argument("--heatmap", nargs=2, default=None, metavar=("X", "Y"),
                        help="the two axes of the heatmap (default: the first two numeric axes)")  # fmt: skip
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import a Python file or module first, so its rules can be named (repeatable)",
                        )  # fmt: skip
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym sweep`` with parsed ``args``, printing to ``console``."""
    from iftgym.errors import RunFailed
    from iftgym.experiments.sweep import finished, load_spec, ray_module

    load_plugins(args.plugin)
    if (args.spec is None) == (args.report is None):
        raise UsageError("give a sweep spec to run, or --report FOLDER to rebuild a report: exactly one of them")
    if args.report is not None:
        records = finished(args.report)
        if not records:
            raise UsageError(f"--report {args.report!r} has no finished cells: expected a sweep folder")
        _report(console, records, args.report, _metric(args.metric, records), args.heatmap)
        return
    spec = load_spec(args.spec)
    spec.base = {**spec.base, "plugins": list(args.plugin)}  # every cell, wherever it runs, loads them first
    cells = spec.cells()  # every cell checked before any runs
    args.metric = _metric(args.metric, None, cells[0].config)
    _check_heatmap(args.heatmap, {*spec.grid, *spec.random})
    if args.backend == "ray":
        ray_module()
    elif args.address is not None:
        raise UsageError("--address is for --backend ray: the local backend runs on this machine's cores")
    if args.workers is not None:
        from iftgym.parallel import check_workers

        check_workers(args.workers)
    out = writable_dir(args.out)
    state = _run_with_progress(console, spec, out, args, len(cells))
    console.print(f"{state.done} cells done, {state.skipped} finished before and skipped, {state.failed} failed; "
                  f"cells in {escape(str(out))}/cells")  # fmt: skip
    _report(console, finished(out), out, _metric(args.metric, finished(out)), args.heatmap)
    if state.failed:
        raise RunFailed(f"{state.failed} of {state.total} cells failed (their errors are in {out}/cells)")


def _run_with_progress(console: Console, spec, out, args: argparse.Namespace, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from iftgym.experiments.sweep import run_sweep

    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sweep", total=total, status="")

        def update(state) -> None:
            status = f"{state.running} running, {state.failed} failed, {state.skipped} skipped"
            progress.update(task, completed=state.skipped + state.done + state.failed, status=status)

        return run_sweep(spec, out, args.backend, args.workers, args.address, update)


def _metric(metric: str | None, records, config=None) -> str:
    """The report's metric: the one asked for, checked against what the cells measure (their world's metrics), else
    the world's first (``mse`` on Frozen Lake)."""
    from iftgym.experiments.compare import METRICS
    from iftgym.experiments.worlds import TOKEN_METRICS
    from iftgym.explain.sweep import metric_names

    if records is not None:
        measured = metric_names(records)
    elif config.world == "frozen-lake":
        measured = list(METRICS)
    elif config.world == "tokens":
        measured = list(TOKEN_METRICS)
    else:
        return metric  # a plugin world's metrics are known once a cell has run
    if metric is None:
        return "mse" if "mse" in measured else (measured or ["mse"])[0]
    if measured and metric not in measured:
        raise UsageError(f"--metric {metric!r} is not measured by these cells: expected one of {', '.join(measured)}")
    return metric


def _report(console: Console, records, folder, metric: str, heatmap) -> None:
    from iftgym.explain.sweep import budget_table, draw_report, equal_budget, report_data, rule_tables
    from iftgym.io import write_json

    _check_heatmap(heatmap, {axis for record in records.values() for axis in record.get("axes", {})})

    for table in rule_tables(records, metric):
        console.print(table)
    budget = equal_budget(records, metric)
    if budget:
        console.print(budget_table(budget, metric))
    figures = draw_report(records, folder, metric, tuple(heatmap) if heatmap else None)
    write_json(report_data(records, metric), Path(folder) / REPORT)
    console.print(f"report: {REPORT} and {len(figures)} figures in {escape(str(folder))}/")


def _check_heatmap(heatmap: list[str] | None, axes: set[str]) -> None:
    for axis in heatmap or ():
        if axis not in axes:
            raise UsageError(f"--heatmap axis {axis!r} is not an axis of this sweep: expected one of "
                             f"{', '.join(sorted(axes))}")  # fmt: skip
