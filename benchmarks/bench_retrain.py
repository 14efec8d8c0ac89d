"""How long the Frozen Lake page (``iftgym explore frozen-lake``: the explorer, and the episode player and the bias
explorer that follow it) takes to answer a change: the default retrain (SFT, IFT, DPO, ORPO and PPO, 20 seeds, 300
steps, the paper map, policies kept every 10 steps), the redraw of its pictures and table, the retrain
after a change of one rule's setting (the explorer keeps the runs that did not change) and the whole answer to it
(retrain and redraw: what a lambda drag waits for), and a ``show step`` scrub — with the rules trained one after
another in the notebook's process (``workers=0``) and with the explorer's worker pool (kept alive between changes:
the rules train, and the figures are drawn, in it and in this process at once), side by side in one run; and the
first page: ``iftgym explore frozen-lake --no-browser`` started, and timed until it listens and until the page it
serves has arrived whole (Voila ends the page once its kernel has built it: imports, training, drawing; a browser
then only draws it), and, apart, a fresh Python process that builds the same page (what that kernel does), until it
is built and until the process has exited (ending its worker). It needs the ``notebooks`` extra (Voila).

Run: ``python benchmarks/bench_retrain.py [--rounds 3] [--json PATH]`` (``--json``: the numbers and the targets,
``benchmarks/_results.py``). Targets (issue 24, with the pool): the full retrain, redraw included, at most 1.5 s, a
change of one rule's setting answered in 0.7 s, a scrub in 0.3 s, the first page in 10 s after the server starts.
Medians of ``--rounds`` changes (for the full retrain each a new lambda with the cache cleared, so every rule trains
again).

It also reports the least time this machine's cores allow for the full retrain: each rule's training seconds (in one
process) summed and spread evenly over the cores, or the longest rule if that is longer, plus the pool's redraw —
a bound no schedule of whole rules beats, set against the target.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

from _results import Results, add_json_option, round_count
from rich.console import Console
from rich.table import Table

from iftgym.interactive import pages
from iftgym.parallel import available_cores

TARGET, ANSWER, SCRUB, FIRST_PAGE = 1.5, 0.7, 0.3, 10.0
# the child prints the clock when its page is built: what a server sends then is ready; its exit comes later
PAGE = "import time; from iftgym.interactive import pages; pages.page('frozen-lake'); print(time.time())"


def measure(workers: int | None, rounds: int) -> dict[str, float]:
    """Medians of the full retrain (training and redraw, and each part), the lambda-only retrain and its answer, and
    a scrub, for one way of training, on the ``iftgym explore frozen-lake`` page: the explorer, and the episode
    player and bias explorer that redraw after each of its retrains."""
    pages.page("frozen-lake", workers=workers)  # the first training pays one-off imports: not timed
    explorer = pages.built["frozen-lake"]["explorer"]
    explorer.pool.warm()
    totals, trainings, redraws, per_rule = [], [], [], []
    for round_ in range(rounds):
        explorer.cache.clear()  # the full retrain: every rule trains again
        start = time.perf_counter()
        explorer.controls["lam"].value = 0.3 + 0.1 * round_
        totals.append(time.perf_counter() - start)
        trainings.append(explorer.train_seconds)
        redraws.append(totals[-1] - explorer.train_seconds)
        per_rule.append({algo: run.seconds for algo, run in explorer.runs.items()})
    only_ift, answers, scrubs = [], [], []
    for round_ in range(rounds):  # what a user's change of lambda costs: the other rules come from the cache
        start = time.perf_counter()
        explorer.controls["lam"].value = 0.05 + 0.1 * round_
        answers.append(time.perf_counter() - start)
        only_ift.append(explorer.train_seconds)
        start = time.perf_counter()
        explorer.controls["step"].value = 150 + 10 * round_
        scrubs.append(time.perf_counter() - start)
    explorer.close()
    rules = {algo: statistics.median(times[algo] for times in per_rule) for algo in per_rule[0]}
    return {"retrain": statistics.median(totals), "training": statistics.median(trainings),
            "redraw": statistics.median(redraws),
            "lambda": statistics.median(only_ift), "answer": statistics.median(answers),
            "scrub": statistics.median(scrubs), "rules": rules}  # fmt: skip


def least_training(rules: dict[str, float], cores: int) -> float:
    """The least wall time in which rules of these seconds (each trained whole, by one process) can train on
    ``cores`` cores: their sum spread evenly, or the longest rule if that is longer."""
    return max(sum(rules.values()) / cores, max(rules.values()))


def first_page(rounds: int) -> tuple[float, float]:
    """Median wall seconds from the start of a fresh process until it has built the frozen-lake page (its start,
    imports, training and drawing: what the page's kernel does), and until it has exited (its worker ended too)."""
    built, lived = [], []
    for _ in range(rounds):
        start = time.time()
        child = subprocess.run([sys.executable, "-c", PAGE], check=True, capture_output=True, text=True)
        lived.append(time.time() - start)
        built.append(float(child.stdout.split()[-1]) - start)
    return statistics.median(built), statistics.median(lived)


def served(rounds: int) -> tuple[float, float]:
    """Median wall seconds from starting ``iftgym explore frozen-lake --no-browser`` until it listens, and until the
    page it serves has arrived whole (Voila sends the page's end once its kernel has built the page: the browser then
    only draws it)."""
    listening, whole = [], []
    for _ in range(rounds):
        start = time.monotonic()
        command = [sys.executable, "-m", "iftgym", "explore", "frozen-lake", "--no-browser"]  # a free port of its own
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline()  # the address, printed once the server listens
            found = re.search(r"http://127\.0\.0\.1:\d+/", line)
            if not found:
                raise SystemExit(f"iftgym explore did not start: {line or server.stderr.read()}")
            listening.append(time.monotonic() - start)
            with urllib.request.urlopen(found.group(0), timeout=600) as page:
                page.read()
            whole.append(time.monotonic() - start)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    return statistics.median(listening), statistics.median(whole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=round_count, default=3, help="changes timed (default 3)")
    add_json_option(parser)
    args = parser.parse_args()
    record = Results("bench_retrain", args)
    alone, pooled = measure(0, args.rounds), measure(None, args.rounds)
    (page, page_process), (listens, page_served) = first_page(args.rounds), served(args.rounds)
    table = Table(title="explorer after a change: 5 rules x 20 seeds x 300 steps, paper map (medians, seconds)")
    for column in ("part", "one process", "worker pool", "ratio"):
        table.add_column(column, justify="right")
    labels = {"retrain": "all rules retrained and redrawn", "training": "of which training",
              "redraw": "of which the redraw (figures, table, player, bias)",
              "lambda": "retrain after a change of lambda (IFT only)",
              "answer": "answer to a change of lambda (retrain and redraw)", "scrub": "a show-step scrub"}  # fmt: skip
    for key, label in labels.items():
        table.add_row(label, f"{alone[key]:.2f}", f"{pooled[key]:.2f}", f"{pooled[key] / alone[key]:.2f}x")
    table.add_row("first page served whole (iftgym explore's start to the page's end)", "", f"{page_served:.2f}", "")
    table.add_row("  of which until the server listens", "", f"{listens:.2f}", "")
    table.add_row("  the page built by a fresh process (what its kernel does)", "", f"{page:.2f}", "")
    Console(width=120).print(table)
    rules, cores = alone["rules"], available_cores()
    bound = least_training(rules, cores) + pooled["redraw"]
    bound_per_rule = max(rules.values()) + pooled["redraw"]
    Console(width=120).print(
        "each rule's training, one process (median s): " + ", ".join(f"{a} {t:.2f}" for a, t in rules.items())
        + f"; sum {sum(rules.values()):.2f} s. The least retrain and redraw {cores} cores allow: {bound:.2f} s "
        f"(the training spread evenly over them, plus the pool's redraw); with a core per rule: {bound_per_rule:.2f} s"
    )  # fmt: skip
    for what, value, target in (
        ("all rules retrained and redrawn", pooled["retrain"], TARGET),
        ("a change of lambda answered", pooled["answer"], ANSWER),
        ("a scrub answered", pooled["scrub"], SCRUB),
        ("the first page", page_served, FIRST_PAGE),
    ):
        verdict = "ok" if value <= target else "MISSED"
        Console(width=120).print(f"target: {what} in at most {target} s with the pool: {value:.2f} s, {verdict}")
    record.number("retrain", pooled["retrain"], "s", "all rules retrained and redrawn, with the worker pool",
                  ("<=", TARGET))  # fmt: skip
    record.number("retrain_alone", alone["retrain"], "s", "the same in one process")
    record.number("training", pooled["training"], "s", "of which training")
    record.number("redraw", pooled["redraw"], "s", "of which the redraw (figures, table, the player's and the bias "
                  "explorer's pictures)")  # fmt: skip
    record.number("lambda", pooled["lambda"], "s", "after a change of lambda (IFT alone retrains)")
    record.number("rules_sum", sum(rules.values()), "s", "the five rules' training seconds, summed (one process)")
    record.number("bound", bound, "s", f"the least retrain and redraw {cores} cores allow (training spread evenly)")
    record.number("bound_per_rule", bound_per_rule, "s", "the least with a core per rule (the longest rule)")
    record.number("answer", pooled["answer"], "s", "a change of lambda answered (retrain and redraw)", ("<=", ANSWER))
    record.number("answer_alone", alone["answer"], "s", "the same in one process")
    record.number("scrub", pooled["scrub"], "s", "a show-step scrub answered", ("<=", SCRUB))
    record.number("scrub_alone", alone["scrub"], "s", "the same in one process")
    record.number("first_page", page_served, "s", "the frozen-lake page served whole, from iftgym explore's start",
                  ("<=", FIRST_PAGE))  # fmt: skip
    record.number("listening", listens, "s", "of which until the server listens")
    record.number("page_build", page, "s", "the page built by a fresh process (what the page's kernel does)")
    record.number("page_process", page_process, "s", "that process's whole life, its exit included")
    record.target(f"the Frozen Lake explorer retrains and redraws all five rules (20 seeds, 300 steps, paper map) in "
                  f"at most {TARGET:g} s (medians of {args.rounds} changes)", "retrain", "retrain_alone", "training",
                  "redraw", "lambda", "rules_sum", "bound", "bound_per_rule")  # fmt: skip
    record.target(f"one rule's setting answered in at most {ANSWER:g} s", "answer", "answer_alone")
    record.target(f"a show-step scrub answered in at most {SCRUB:g} s", "scrub", "scrub_alone")
    record.target(f"the first page ready in at most {FIRST_PAGE:g} s after the server starts", "first_page",
                  "listening", "page_build", "page_process")  # fmt: skip
    record.write()


if __name__ == "__main__":
    main()
