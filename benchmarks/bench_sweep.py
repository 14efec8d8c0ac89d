"""Sweeps on this machine's cores against one cell after another, and Ray's overhead per cell, in one run.

Run: ``python benchmarks/bench_sweep.py [--cells 40] [--no-ray] [--json PATH]`` (``--json``: the numbers and their
targets, ``benchmarks/_results.py``).

1. A ``--cells``-cell sweep (IFT and SFT at compare's defaults, 20 seeds and 300 steps, lambda x gamma on the paper
   map) twice: every cell in
   this process one after another (``workers=0``), then with local worker processes (the default: one per core but
   one, this process working too). Target: at most 0.6x the time of one after another on 2 cores.
2. Ray's overhead per cell on a local cluster: 20 one-step cells run as Ray tasks against the same cells run in this
   process, ``(ray - here) / cells`` with the cluster's start-up shown apart (not measured where Ray is not
   installed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import Results, add_json_option
from rich.console import Console
from rich.table import Table

from iftgym.experiments.sweep import parse_spec, run_sweep

LOCAL_OVER_IN_TURN = 0.6  # the target on 2 cores


def sweep_spec(cells: int, steps: int, seeds: int) -> dict:
    lams = np.round(np.linspace(0, 0.9, 5), 3).tolist()
    gammas = np.round(np.linspace(0, 0.99, max(cells // 5, 1)), 3).tolist()
    return {"base": {"algos": ["sft", "ift"], "seeds": seeds, "steps": steps},
            "grid": {"ift.lam": lams, "ift.gamma": gammas}}  # fmt: skip


def timed_sweep(spec: dict, **engine) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        state = run_sweep(parse_spec(spec), Path(folder), **engine)
        if state.failed:
            raise SystemExit(f"{state.failed} cells failed")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=40, help="cells of the local sweep, a multiple of 5 (default 40)")
    parser.add_argument("--steps", type=int, default=300, help="steps per cell (default 300, as iftgym compare)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per cell (default 20, as iftgym compare)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    add_json_option(parser)
    args = parser.parse_args()
    record = Results("bench_sweep", args)
    console = Console(width=120)
    spec = sweep_spec(args.cells, args.steps, args.seeds)
    cells = len(parse_spec(spec).cells())
    in_turn = timed_sweep(spec, workers=0)
    local = timed_sweep(spec)
    table = Table(title=f"{cells}-cell sweep (sft and ift, {args.seeds} seeds, {args.steps} steps each)")
    for column in ("engine", "seconds", "/ one after another", "target"):
        table.add_column(column, justify="right")
    table.add_row("one after another", f"{in_turn:.1f}", "1.00", "")
    ratio = local / in_turn
    verdict = "ok" if ratio <= LOCAL_OVER_IN_TURN else "MISSED"
    table.add_row("local processes", f"{local:.1f}", f"{ratio:.2f}", f"<= {LOCAL_OVER_IN_TURN:.2f} {verdict}")
    console.print(table)
    record.number("local_ratio", ratio, "x", "local processes / one after another", ("<=", LOCAL_OVER_IN_TURN))
    record.number("local", local, "s", "local processes")
    record.number("in_turn", in_turn, "s", "one cell after another")
    record.target(f"a {cells}-cell sweep (SFT and IFT, {args.seeds} seeds, {args.steps} steps each) on local worker "
                  f"processes at most {LOCAL_OVER_IN_TURN:g}x the time of one cell after another",
                  "local_ratio", "local", "in_turn")  # fmt: skip
    if not args.no_ray:
        ray_overhead(console, record)
    record.write()


def ray_overhead(console: Console, record: Results) -> None:
    """Ray's overhead per cell and its start-up, recorded as not measured where Ray is not installed."""
    try:
        import ray
    except ImportError:
        console.print("Ray is not installed: its overhead per cell was not measured")
        startup = overhead = None
    else:
        startup, overhead = ray_seconds(console, ray)
    record.number("ray_overhead", overhead, "s", "overhead per cell")
    record.number("ray_startup", startup, "s", "the cluster's start-up (once)")
    record.target("none (context): Ray on a local 2-CPU cluster, 20 one-step cells as Ray tasks against the same in "
                  "one process", "ray_overhead", "ray_startup",
                  note=None if overhead is not None else "Ray is not installed")  # fmt: skip


def ray_seconds(console: Console, ray) -> tuple[float, float]:
    """The Ray cluster's start-up and its overhead per cell, in seconds."""
    tiny = {"base": {"algos": ["sft"], "seeds": 2, "steps": 1}, "grid": {"lr": np.linspace(0.01, 0.1, 20).tolist()}}
    here = timed_sweep(tiny, workers=0)
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start
    on_ray = timed_sweep(tiny, backend="ray")
    ray.shutdown()
    table = Table(title="Ray on a local cluster (2 CPUs), 20 one-step cells")
    for column in ("what", "seconds"):
        table.add_column(column, justify="right")
    table.add_row("cluster start-up (once)", f"{startup:.1f}")
    table.add_row("20 cells in this process", f"{here:.2f}")
    table.add_row("20 cells as Ray tasks", f"{on_ray:.2f}")
    table.add_row("overhead per cell", f"{(on_ray - here) / 20:.3f}")
    console.print(table)
    return startup, (on_ray - here) / 20


if __name__ == "__main__":
    main()
