"""How long the Frozen Lake explorer takes to answer a change: the default retrain (SFT, IFT, DPO, ORPO and PPO,
20 seeds, 300 steps, the paper map, policies kept every 10 steps), the redraw of its figures and table, and the
retrain after a change of one rule's setting (the explorer keeps the runs that did not change) — with the rules
trained one after another in the notebook's process (``workers=0``) and with the explorer's worker pool (kept alive
between changes: the rules train in it and in this process at once), side by side in one run.

Run: ``python benchmarks/bench_retrain.py [--rounds 3] [--json PATH]`` (``--json``: the numbers and the target,
``benchmarks/_results.py``). Target: the full retrain at most 1.5 s. Medians of
``--rounds`` changes (each a new lambda, so every rule trains again).
"""

from __future__ import annotations

import argparse
import statistics
import time

from _results import Results, add_json_option
from rich.console import Console
from rich.table import Table

from iftgym.interactive import FrozenLakeExplorer

TARGET = 1.5


def measure(workers: int | None, rounds: int) -> dict[str, float]:
    """Medians of the full retrain, the redraw and the lambda-only retrain, for one way of training."""
    explorer = FrozenLakeExplorer(workers=workers)  # the first training pays one-off imports: not timed
    explorer.pool.warm()
    totals, redraws = [], []
    for round_ in range(rounds):
        explorer.cache.clear()  # the full retrain: every rule trains again
        start = time.perf_counter()
        explorer.controls["lam"].value = 0.3 + 0.1 * round_
        totals.append(explorer.train_seconds)
        redraws.append(time.perf_counter() - start - explorer.train_seconds)
    only_ift = []
    for round_ in range(rounds):  # what a user's change of lambda costs: the other rules come from the cache
        explorer.controls["lam"].value = 0.05 + 0.1 * round_
        only_ift.append(explorer.train_seconds)
    explorer.close()
    return {"retrain": statistics.median(totals), "redraw": statistics.median(redraws),
            "lambda": statistics.median(only_ift)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="changes timed (default 3)")
    add_json_option(parser)
    args = parser.parse_args()
    record = Results("bench_retrain", args)
    alone, pooled = measure(0, args.rounds), measure(None, args.rounds)
    table = Table(title="explorer after a change: 5 rules x 20 seeds x 300 steps, paper map (medians, seconds)")
    for column in ("part", "one process", "worker pool", "ratio"):
        table.add_column(column, justify="right")
    labels = {"retrain": "retrain, all rules", "redraw": "redraw (figures and table)",
              "lambda": "retrain after a change of lambda (IFT only)"}  # fmt: skip
    for key, label in labels.items():
        table.add_row(label, f"{alone[key]:.2f}", f"{pooled[key]:.2f}", f"{pooled[key] / alone[key]:.2f}x")
    verdict = "ok" if pooled["retrain"] <= TARGET else "MISSED"
    Console(width=120).print(table)
    Console(width=120).print(f"target: all rules retrained in at most {TARGET} s with the pool: {verdict}")
    record.number("retrain", pooled["retrain"], "s", "with the worker pool", ("<=", TARGET))
    record.number("retrain_alone", alone["retrain"], "s", "in one process")
    record.number("redraw", pooled["redraw"], "s", "redraw of the figures and table")
    record.number("lambda", pooled["lambda"], "s", "after a change of lambda (IFT alone retrains)")
    record.target(f"the Frozen Lake explorer retrains all five rules (20 seeds, 300 steps, paper map) in at most "
                  f"{TARGET:g} s (medians of {args.rounds} changes)", "retrain", "retrain_alone", "redraw",
                  "lambda")  # fmt: skip
    record.write()


if __name__ == "__main__":
    main()
