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
  the medians are of the paired differences (each pair runs back to back, under about the same load);
* ``part by part``: what update maps do, timed alone in one process (``workers=0``, CPU seconds, medians of
  ``--rounds``): the fields and their numbers (the recorders' own seconds, summed over the rules; torch's
  forward-mode set-up, paid once per process, apart), the table and the figure drawn from the results. On a shared
  machine this is the steadier measure of what they cost; the whole command's difference is the end-to-end one.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import Results, add_json_option, round_count
from rich.console import Console
from rich.table import Table

from iftgym.experiments.compare import compare
from iftgym.experiments.config import CompareConfig
from iftgym.experiments.results import load_results
from iftgym.explain.figures import save_figure, update_maps_figure
from iftgym.explain.tables import update_table
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


def part_by_part(seeds: int, cache: Path, rounds: int) -> dict[str, float]:
    """CPU seconds of the update maps' own work in one process: the fields (the recorders' seconds, summed), the
    table and the figure, medians of ``rounds`` fresh comparisons; the first round also pays torch's forward-mode
    set-up (once per process): its excess over the others is ``set-up``."""
    times: dict[str, list[float]] = {"fields": [], "table": [], "figure": []}
    for _ in range(rounds):
        results = compare(CompareConfig(seeds=seeds, update_maps=True), cache=cache, workers=0)
        entry = results.maps[0]
        times["fields"].append(sum(run.update.get("seconds", 0.0) for run in entry.trained().values()))
        start = time.process_time()
        Console(file=io.StringIO(), width=160).print(update_table(entry))
        times["table"].append(time.process_time() - start)
        config = results.config
        model = FrozenLakeMDP.from_map(entry.grid.rows, config["slippery"], config["success_rate"], config["gamma"])
        with tempfile.TemporaryDirectory() as folder:
            start = time.process_time()
            save_figure(update_maps_figure(entry, model), Path(folder) / "paper-update.png")
            times["figure"].append(time.process_time() - start)
    later = times["fields"][1:] or times["fields"]
    return {"set-up": max(0.0, times["fields"][0] - statistics.median(later)), "fields": statistics.median(later),
            **{key: statistics.median(times[key]) for key in ("table", "figure")}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=round_count, default=3,
                        help="runs timed with and without update maps (default 3)")  # fmt: skip
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
        parts = part_by_part(args.seeds, out / ".iftgym-cache" / "sb3", args.rounds)
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
    added = statistics.median(b - a for a, b in zip(times["without"], times["with"]))
    cpu_added = statistics.median(b - a for a, b in zip(times["cpu without"], times["cpu with"]))
    ratio, cpu_ratio = median["with"] / median["without"], median["cpu with"] / median["cpu without"]
    own = parts["set-up"] + parts["fields"] + parts["table"] + parts["figure"]
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
    table.add_row("update fields, summed over the rules where they trained (this run)", f"{fields:.2f}")
    table.add_row("the update figure, drawn from the results (wall)", f"{statistics.median(draws):.2f}")
    table.add_row("part by part, one process (CPU): torch's forward-mode set-up, once", f"{parts['set-up']:.2f}")
    table.add_row("... the fields and their numbers, 5 rules x 3 points x 20 seeds", f"{parts['fields']:.2f}")
    table.add_row("... the table", f"{parts['table']:.2f}")
    table.add_row("... the figure", f"{parts['figure']:.2f}")
    table.add_row("... in all", f"{own:.2f}  ({'ok' if own <= TARGET else 'MISSED'}: target <= {TARGET:g} s)")
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
    record.number("own", own, "s", "update maps' own work, part by part in one process (CPU: set-up, fields, table, "
                  "figure)", ("<=", TARGET))  # fmt: skip
    record.target(f"`--update-maps` adds at most {TARGET:g} s to `iftgym compare` (paper map, {args.seeds} seeds, "
                  "default rules, 3 training points)", "added", "ratio", "without", "with", "cpu_added", "cpu_ratio",
                  "load", "own")  # fmt: skip
    record.write()


if __name__ == "__main__":
    main()
