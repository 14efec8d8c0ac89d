"""What ``--update-maps`` adds to ``iftgym compare``: the default rules (SFT, IFT, DPO, ORPO, PPO and SB3's PPO) on the
paper map, 20 seeds, 300 steps, with and without update maps, side by side in one run.

Run: ``python benchmarks/bench_update_maps.py [--rounds 3] [--seeds 20] [--json PATH]``. Target: at most 2 s added.

* ``whole command``: ``python -m iftgym compare`` as a user runs it (start-up, training in the worker processes, the
  exact metrics, the tables and figures), without and with ``--update-maps``, in alternation, medians of
  ``--rounds`` runs each; SB3's seeds are read from the folder's cache (trained once before the timed runs), so the
  difference is what update maps add: the fields of every rule at steps 0, 150 and 300, their numbers, the cosines,
  the table and the figure. Both the wall time and the CPU time of the command and its worker processes (user +
  system, ``getrusage``) are measured: on a machine shared with other work the wall time swings with their load,
  the CPU time much less; the CPU time added is what update maps cost in all (the wall time added is at most that,
  less where workers compute fields side by side);
* ``update fields``: the seconds the fields took where each rule trained, summed over the rules (``seconds`` in
  each algorithm's ``update`` in ``results.json``: CPU time spread over the workers, so it can exceed what the
  whole command adds);
* ``update figure``: drawing ``paper-update.png`` from the results (median of 3).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import Results, add_json_option
from rich.console import Console
from rich.table import Table

from iftgym.experiments.results import load_results
from iftgym.explain.figures import save_figure, update_maps_figure
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

TARGET = 2.0


def run_command(out: Path, seeds: int, *options: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, the command and every worker process it waited for) of the whole
    ``iftgym compare`` command."""
    command = [sys.executable, "-m", "iftgym", "compare", "--seeds", str(seeds), "--out", str(out), *options]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="runs timed with and without update maps (default 3)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per algorithm (default 20, as iftgym compare)")
    add_json_option(parser)
    args = parser.parse_args()
    record = Results("bench_update_maps", args)
    console = Console(width=120)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "compare"  # one folder: both read the same cached SB3 seeds
        run_command(out, args.seeds)  # SB3's seeds into the cache (and the imports into the OS's file cache)
        times: dict[str, list[float]] = {"without": [], "with": [], "cpu without": [], "cpu with": []}
        loads = [os.getloadavg()[0]]
        for _ in range(args.rounds):  # in alternation: a load that comes and goes falls on both
            for key, options in (("without", ()), ("with", ("--update-maps",))):
                wall, cpu = run_command(out, args.seeds, *options)
                times[key].append(wall)
                times[f"cpu {key}"].append(cpu)
            loads.append(os.getloadavg()[0])
        results = load_results(out / "results.json")
    entry = results.maps[0]
    fields = sum(run.update["seconds"] for run in entry.trained().values() if "seconds" in (run.update or {}))
    config = results.config
    model = FrozenLakeMDP.from_map(entry.grid.rows, config["slippery"], config["success_rate"], config["gamma"])
    draws = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(3):
            start = time.perf_counter()
            save_figure(update_maps_figure(entry, model), Path(folder) / "paper-update.png")
            draws.append(time.perf_counter() - start)
    median = {key: statistics.median(values) for key, values in times.items()}
    added, ratio = median["with"] - median["without"], median["with"] / median["without"]
    cpu_added, cpu_ratio = median["cpu with"] - median["cpu without"], median["cpu with"] / median["cpu without"]
    rules = ", ".join(config["algos"])
    table = Table(title=f"iftgym compare, paper map, {args.seeds} seeds, {config['steps']} steps ({rules}; SB3 "
                  f"cached): medians of {args.rounds} runs, seconds")  # fmt: skip
    for column in ("what", "seconds"):
        table.add_column(column, justify="right")
    table.add_row("whole command, without --update-maps", f"{median['without']:.2f}")
    table.add_row("whole command, with --update-maps", f"{median['with']:.2f}")
    table.add_row("added", f"{added:+.2f}  ({'ok' if added <= TARGET else 'MISSED'}: target <= {TARGET:g} s)")
    table.add_row("ratio with / without", f"{ratio:.2f}x")
    table.add_row("CPU, without --update-maps (the command and its workers)", f"{median['cpu without']:.2f}")
    table.add_row("CPU, with --update-maps", f"{median['cpu with']:.2f}")
    table.add_row("CPU added", f"{cpu_added:+.2f}")
    table.add_row("CPU ratio with / without", f"{cpu_ratio:.2f}x")
    table.add_row("update fields, summed over the rules where they trained", f"{fields:.2f}")
    table.add_row("the update figure, drawn from the results", f"{statistics.median(draws):.2f}")
    console.print(table)
    console.print(
        "runs, wall (without / with): "
        + ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(times["without"], times["with"]))
    )
    console.print(
        "runs, CPU (without / with): "
        + ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(times["cpu without"], times["cpu with"]))
    )
    console.print(f"load average (1 min) before and after each round: {', '.join(f'{x:.1f}' for x in loads)} on "
                  f"{os.cpu_count()} cores")  # fmt: skip
    record.number("without", median["without"], "s", "`iftgym compare` (SB3 cached)")
    record.number("with", median["with"], "s", "`iftgym compare --update-maps` (SB3 cached)")
    record.number("added", added, "s", "added by `--update-maps`", ("<=", TARGET))
    record.number("ratio", ratio, "x", "with / without")
    record.number("cpu_added", cpu_added, "s", "CPU added (the command and its workers)")
    record.number("cpu_ratio", cpu_ratio, "x", "CPU with / without")
    record.number("load", max(loads), "", "highest load average (1 min) during the runs")
    record.number("fields", fields, "s", "update fields, summed over the rules (in their workers)")
    record.number("figure", statistics.median(draws), "s", "the update figure")
    record.target(f"`--update-maps` adds at most {TARGET:g} s to `iftgym compare` (paper map, {args.seeds} seeds, "
                  "default rules, 3 training points)", "added", "ratio", "without", "with", "cpu_added", "cpu_ratio",
                  "load")  # fmt: skip
    record.write()


if __name__ == "__main__":
    main()
