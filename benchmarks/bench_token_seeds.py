"""The token world's seeds are one batched model: a whole ``sft,ift`` comparison on addition at 20 seeds against the
same at 5 seeds, measured side by side.

Run: ``python benchmarks/bench_token_seeds.py [--steps 150] [--repeats 2] [--json PATH]``. Each repeat runs the 5-seed
and the 20-seed comparison one after the other (training, the evaluations along the way, the final scores, the reference
rows and the paired statistics: what ``iftgym compare --world tokens --task addition --task-arg digits=2 --algos
sft,ift`` does), and the table gives the medians and their ratio (issue 20's target: at most 2x). Steps are fewer than
the default 1500 so a repeat takes minutes; the evaluations are every ``steps // 10`` as in a real run. ``--json``
writes the numbers and the target (``benchmarks/_results.py``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _results import Results, add_json_option
from rich.console import Console
from rich.table import Table

from iftgym.experiments.compare import compare
from iftgym.experiments.config import CompareConfig

TARGET = 2.0  # 20 seeds at most twice the time of 5


def seconds(seeds: int, steps: int) -> float:
    """Wall time of one comparison of ``seeds`` seeds."""
    config = CompareConfig(world="tokens", task="addition", task_args={"digits": 2}, algos=["sft", "ift"],
                           seeds=seeds, steps=steps, device="cpu")  # fmt: skip
    start = time.perf_counter()
    compare(config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps per algorithm (default 150)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats (default 2)")
    add_json_option(parser)
    args = parser.parse_args()
    record = Results("bench_token_seeds", args)
    torch.set_num_threads(1)
    times: dict[int, list[float]] = {5: [], 20: []}
    for _ in range(args.repeats):
        for seeds in times:
            times[seeds].append(seconds(seeds, args.steps))
    five, twenty = statistics.median(times[5]), statistics.median(times[20])
    table = Table(title=f"sft,ift on addition (2 digits, TinyGPT 2x64), {args.steps} steps, median of {args.repeats}")
    for column in ("seeds", "seconds", "/ 5 seeds"):
        table.add_column(column, justify="right")
    table.add_row("5", f"{five:.1f}", "1.00x")
    table.add_row("20", f"{twenty:.1f}", f"{twenty / five:.2f}x")
    Console().print(table)
    record.number("ratio", twenty / five, "x", "20 seeds / 5 seeds", ("<=", TARGET))
    record.number("twenty", twenty, "s", "20 seeds")
    record.number("five", five, "s", "5 seeds")
    record.target(f"the token world's `sft,ift` comparison on addition (2 digits, {args.steps} steps): 20 seeds at "
                  f"most {TARGET:g}x the time of 5 (medians of {args.repeats})", "ratio", "twenty", "five")  # fmt: skip
    record.write()


if __name__ == "__main__":
    main()
