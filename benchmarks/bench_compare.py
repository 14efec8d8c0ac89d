"""Wall time of the default ``iftgym compare`` against training every seed separately, side by side.

Run: ``python benchmarks/bench_compare.py [--seeds 20]``. Both paths train the same algorithms on the paper map
with the same settings; the batched path is what ``iftgym compare`` does (all seeds as one model).
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from iftgym.experiments.compare import DEFAULT_ALGOS, CompareConfig, compare, named_maps, run_algorithm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    config = CompareConfig(seeds=args.seeds)
    torch.set_num_threads(config.threads)

    start = time.perf_counter()
    results = compare(config)
    batched_total = time.perf_counter() - start
    batched = {a: r["wall_time"] for a, r in results["maps"][0]["algorithms"].items()}

    ((_, model),) = named_maps(config)
    data = model.training_data(config.demos)
    sequential = {}
    for algo in DEFAULT_ALGOS:
        start = time.perf_counter()
        for seed in range(args.seeds):
            run_algorithm(model, algo, data, config, seeds=[seed])
        sequential[algo] = time.perf_counter() - start

    table = Table(title=f"default comparison, paper map, {args.seeds} seeds, {config.steps} steps")
    for column in ("algorithm", "batched s", "one seed at a time s", "ratio"):
        table.add_column(column, justify="right")
    for algo in DEFAULT_ALGOS:
        table.add_row(
            algo, f"{batched[algo]:.2f}", f"{sequential[algo]:.2f}", f"{sequential[algo] / batched[algo]:.1f}x"
        )
    total_sequential = sum(sequential.values())
    table.add_row("total", f"{sum(batched.values()):.2f}", f"{total_sequential:.2f}",
                  f"{total_sequential / sum(batched.values()):.1f}x")  # fmt: skip
    console = Console()
    console.print(table)
    console.print(f"whole `iftgym compare` run (training + exact metrics): {batched_total:.1f} s")


if __name__ == "__main__":
    main()
