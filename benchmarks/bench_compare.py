"""The main job, ``iftgym compare`` with its defaults, timed as a user runs it, and seeds batched against one by one.

Run: ``python benchmarks/bench_compare.py [--seeds 20] [--skip-seeds] [--json PATH]`` (``--json``: the numbers and
their targets, ``benchmarks/_results.py``).

1. The whole command (``python -m iftgym compare``, start-up, training, exact metrics, tables and figures), in one
   run of this script:

   * ``first run``: into a new folder, so every Stable-Baselines3 seed trains, in worker processes (one per core)
     while iftgym's own rules train (target: at most 20 s);
   * ``re-run``: the same command again, reading SB3's seeds from the folder's cache (target: at most 8 s);
   * ``SB3 seeds in turn``: ``--workers 0 --no-cache``, every SB3 seed trained in the main process one after
     another, as iftgym 0.1.0 did.

   The three must write the same numbers (everything in ``results.json`` but the wall times), which is checked.
2. Start-up and figures: ``iftgym --help`` (target: under 0.5 s) and drawing the run's figures (target: under 2 s),
   medians of a few runs.
3. Each of iftgym's rules trained with all seeds as one batched model against one seed at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _results import Results, add_json_option
from rich.console import Console
from rich.table import Table

from iftgym.experiments.compare import CompareConfig, compare, named_maps, run_algorithm
from iftgym.experiments.config import SB3
from iftgym.experiments.results import CompareResult, load_results

TARGETS = {"first run": 20.0, "re-run": 8.0}
HELP_SECONDS, FIGURE_SECONDS = 0.5, 2.0


def run_command(out: Path, seeds: int, *options: str) -> float:
    """Seconds the whole ``iftgym compare`` command took, as a user would time it."""
    command = [sys.executable, "-m", "iftgym", "compare", "--seeds", str(seeds), "--out", str(out), *options]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def numbers(out: Path) -> Any:
    """``results.json`` without the times spent (the only thing allowed to differ between two runs)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if key not in ("wall_time", "seconds")}
        return [strip(item) for item in value] if isinstance(value, list) else value

    return strip(json.loads((out / "results.json").read_text())["maps"])


def median_seconds(function: Callable[[], object], rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup_and_figures(results: CompareResult, console: Console, record: Results) -> None:
    from iftgym.explain.figures import draw_figures

    helps = {}
    for command in ((), *((name,) for name in COMMANDS)):  # the top level and every sub-command
        argv = [sys.executable, "-m", "iftgym", *command, "--help"]
        helps[command] = median_seconds(lambda argv=argv: subprocess.run(argv, check=True, capture_output=True))
    slowest = max(helps, key=helps.get)
    with tempfile.TemporaryDirectory() as folder:
        figure_seconds = median_seconds(lambda: draw_figures(results, Path(folder)), rounds=3)
        figures = len(list(Path(folder).glob("*.png")))
    table = Table(title="start-up and figures (medians)")
    for column in ("what", "seconds", "target"):
        table.add_column(column, justify="right")
    rows = (("iftgym --help", helps[()], HELP_SECONDS),
            (f"slowest sub-command --help (iftgym {slowest[0]} --help)", helps[slowest], HELP_SECONDS),
            (f"the {figures} figures of the run", figure_seconds, FIGURE_SECONDS))  # fmt: skip
    for name, seconds, target in rows:
        table.add_row(name, f"{seconds:.2f}", f"< {target} s {'ok' if seconds < target else 'MISSED'}")
    console.print(table)
    record.number("help", helps[()], "s", "`iftgym --help`", ("<", HELP_SECONDS))
    record.number("help_slowest", helps[slowest], "s", f"slowest sub-command (`iftgym {slowest[0]} --help`)",
                  ("<", HELP_SECONDS))  # fmt: skip
    record.number("figures", figure_seconds, "s", f"the {figures} figures of the default run", ("<", FIGURE_SECONDS))
    record.target(f"`iftgym --help` and every sub-command's `--help` under {HELP_SECONDS:g} s", "help", "help_slowest")
    record.target(f"a comparison's figures under {FIGURE_SECONDS:g} s", "figures")


COMMANDS = ("maps", "solve", "compare", "plot", "bias", "lm", "generate", "sweep", "explore")


def whole_command(seeds: int, console: Console, record: Results) -> CompareResult:
    with tempfile.TemporaryDirectory() as folder:
        cached, in_turn = Path(folder) / "cached", Path(folder) / "in-turn"
        times = {
            "first run": run_command(cached, seeds),
            "re-run": run_command(cached, seeds),
            "SB3 seeds in turn": run_command(in_turn, seeds, "--workers", "0", "--no-cache"),
        }
        same = numbers(cached) == numbers(in_turn)
        results = load_results(cached / "results.json")
    table = Table(title=f"`iftgym compare --seeds {seeds}` (all rows, SB3 included), whole command")
    for column in ("run", "seconds", "target", "SB3 in turn / this"):
        table.add_column(column, justify="right")
    for name, seconds in times.items():
        target = f"<= {TARGETS[name]:.0f} s {'ok' if seconds <= TARGETS[name] else 'MISSED'}" if name in TARGETS else ""
        table.add_row(name, f"{seconds:.1f}", target, f"{times['SB3 seeds in turn'] / seconds:.2f}x")
    console.print(table)
    console.print(f"same numbers with SB3 cached, in workers and in turn: {'yes' if same else 'NO'}")
    record.number("first_run", times["first run"], "s", "first run", ("<=", TARGETS["first run"]))
    record.number("in_turn", times["SB3 seeds in turn"], "s", "SB3's seeds one after another in the main process, as "
                  "0.1.0 did (`--workers 0 --no-cache`)")  # fmt: skip
    record.number("re_run", times["re-run"], "s", "re-run", ("<=", TARGETS["re-run"]))
    record.number("same", same, "", "`results.json` identical (but wall times) cached, in workers and in turn",
                  ("==", True))  # fmt: skip
    command = f"`iftgym compare --seeds {seeds}` (all rows, SB3 included)"
    record.target(f"{command} at most {TARGETS['first run']:g} s the first time", "first_run", "in_turn")
    record.target(f"... and at most {TARGETS['re-run']:g} s when re-run (SB3 read from the cache)", "re_run")
    record.target("the same numbers with workers and cache as without", "same")
    if not same:
        raise SystemExit("the runs' results differ")
    return results


def batched_against_sequential(seeds: int, console: Console, record: Results) -> None:
    config = CompareConfig(seeds=seeds)
    torch.set_num_threads(config.threads)
    ((_, model),) = named_maps(config)
    data = model.training_data(config.demos)
    rules = [algo for algo in config.algos if algo != SB3]  # the default rows but SB3's
    batched = compare(CompareConfig(seeds=seeds, algos=rules), workers=0).maps[0].algorithms  # one process
    sequential = {}
    for algo in rules:
        start = time.perf_counter()
        for seed in range(seeds):
            run_algorithm(model, algo, data, config, seeds=[seed])
        sequential[algo] = time.perf_counter() - start
    table = Table(title=f"iftgym's rules, paper map, {seeds} seeds, {config.steps} steps")
    for column in ("algorithm", "batched s", "one seed at a time s", "ratio"):
        table.add_column(column, justify="right")
    for algo in rules:
        seconds = batched[algo].wall_time
        table.add_row(algo, f"{seconds:.2f}", f"{sequential[algo]:.2f}", f"{sequential[algo] / seconds:.1f}x")
    total, total_sequential = sum(batched[a].wall_time for a in rules), sum(sequential.values())
    table.add_row("total", f"{total:.2f}", f"{total_sequential:.2f}", f"{total_sequential / total:.1f}x")
    console.print(table)
    for algo in rules:
        record.number(f"batched_{algo}", sequential[algo] / batched[algo].wall_time, "x", algo)
    record.number("batched_total", total_sequential / total, "x", "all rules")
    record.target(f"none (context): {seeds} seeds trained as one batched model against one seed at a time, paper map, "
                  f"{config.steps} steps, one process (time one at a time / batched)",
                  *(f"batched_{algo}" for algo in rules), "batched_total")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20, help="seeds per algorithm (default 20, as iftgym compare)")
    parser.add_argument("--skip-seeds", action="store_true", help="only time the whole command")
    add_json_option(parser)
    args = parser.parse_args()
    record = Results("bench_compare", args)
    console = Console(width=120)
    results = whole_command(args.seeds, console, record)
    startup_and_figures(results, console, record)
    if not args.skip_seeds:
        batched_against_sequential(args.seeds, console, record)
    record.write()


if __name__ == "__main__":
    main()
