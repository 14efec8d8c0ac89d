"""How long the Frozen Lake explorer takes to answer a change: the default retrain (SFT, IFT, DPO, ORPO and PPO,
20 seeds, 300 steps, the paper map, policies kept every 10 steps), the redraw of its figures and table, and the
retrain after a change of one rule's setting (the explorer keeps the runs that did not change).

Run: ``python benchmarks/bench_retrain.py [--rounds 3]``. Target: the retrain at most 1 s on the 2-core machine.
Medians of ``--rounds`` changes (each a new lambda, so every rule trains again), per rule and in all.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.table import Table

from iftgym.interactive import FrozenLakeExplorer

TARGET = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="changes timed (default 3)")
    args = parser.parse_args()
    explorer = FrozenLakeExplorer()  # the first training pays one-off imports: not timed
    totals, redraws, per_rule = [], [], {algo: [] for algo in explorer.runs}
    for round_ in range(args.rounds):
        explorer.cache.clear()  # the full retrain: every rule trains again
        start = time.perf_counter()
        explorer.controls["lam"].value = 0.3 + 0.1 * round_
        totals.append(explorer.train_seconds)
        redraws.append(time.perf_counter() - start - explorer.train_seconds)
        for algo, run in explorer.runs.items():
            per_rule[algo].append(run.seconds)
    table = Table(title="explorer retrain after a change: 5 rules x 20 seeds x 300 steps, paper map (medians)")
    for column in ("part", "seconds"):
        table.add_column(column, justify="right")
    for algo, seconds in per_rule.items():
        table.add_row(algo, f"{statistics.median(seconds):.2f}")
    retrain = statistics.median(totals)
    table.add_row(
        "retrain, all rules", f"{retrain:.2f} (target <= {TARGET:.0f} s: {'ok' if retrain <= TARGET else 'MISSED'})"
    )
    table.add_row("redraw (figures and table)", f"{statistics.median(redraws):.2f}")
    only_ift = []
    for round_ in range(args.rounds):  # what a user's change of lambda costs: the other rules come from the cache
        explorer.controls["lam"].value = 0.05 + 0.1 * round_
        only_ift.append(explorer.train_seconds)
    table.add_row("retrain after a change of lambda (IFT only)", f"{statistics.median(only_ift):.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
