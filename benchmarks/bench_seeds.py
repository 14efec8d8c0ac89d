"""Training K seeds as one batched model against training them one at a time, rule by rule.

Run: ``python benchmarks/bench_seeds.py [--seeds 20] [--steps 200] [--batched-only] [--json PATH]``. Every rule
trains an ``MLPPolicy`` on the paper map with the same data and steps, once with ``seeds=K`` and K times with a
single seed; the ``/ sft's`` column is each rule's batched time over SFT's (PPO's target: at most 3x at 500 seeds x
100 steps, ``--seeds 500 --steps 100 --batched-only``). The two must give the same policies, which the last column
checks: every seed draws its rollouts from its own generator, so PPO's batched and sequential runs see the same
episodes too. ``--json`` writes the numbers and their targets (``benchmarks/_results.py``).
"""

from __future__ import annotations

import argparse
import time

import torch
from _results import Results, add_json_option, round_count
from rich.console import Console
from rich.table import Table

from iftgym.loop import TrainConfig, train
from iftgym.policies import MLPPolicy
from iftgym.types import PairBatch, PreferencePair, StepBatch, TrainingData
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

RULES = ("sft", "ift", "dpo", "orpo", "ppo")
TOLERANCE = 1e-4  # batched and sequential runs differ only by float32 summation order
PPO_OVER_SFT = 3.0  # the target at 500 seeds x 100 steps


def timed_run(model: FrozenLakeMDP, rule: str, data: TrainingData, seeds: list[int], config: TrainConfig):
    """Seconds to train ``seeds`` as one model, and the trained ``(K, S, A)`` action probabilities."""
    policy = MLPPolicy(model.n_states, model.n_actions, seeds=seeds)
    start = time.perf_counter()
    train(policy, rule, model, data, config)
    return time.perf_counter() - start, policy.action_probs()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20, help="number of seeds K (default 20)")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per run (default 200)")
    parser.add_argument("--map", default="paper", help="catalogue map name or map file (default paper)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest at this size)")
    parser.add_argument("--rounds", type=round_count, default=3,
                        help="batched runs per rule; the median is shown (default 3)")  # fmt: skip
    parser.add_argument("--batched-only", action="store_true",
                        help="skip the seed-by-seed runs (for many seeds: `--seeds 500 --steps 100 --batched-only` "
                        "is the per-state PPO target, at most 3x SFT's time)")  # fmt: skip
    add_json_option(parser)
    args = parser.parse_args()
    record = Results("bench_seeds", args)
    torch.set_num_threads(args.threads)

    model = FrozenLakeMDP.from_map(args.map)
    demo, sub = model.optimal_demonstration(), model.suboptimal_demonstration()
    if sub is None:
        raise SystemExit(f"map {args.map!r} has no sub-optimal route, so DPO and ORPO have no preference pair")
    data = TrainingData(
        demos=StepBatch.from_trajectories(model, [demo]),
        pairs=PairBatch.from_pairs(model, [PreferencePair(demo, sub)]),
    )
    config = TrainConfig(steps=args.steps)
    seeds = list(range(args.seeds))
    for rule in RULES:  # warm up every code path so the first timed rule pays no one-off costs
        timed_run(model, rule, data, [0], TrainConfig(steps=4))

    table = Table(
        title=f"{args.seeds} seeds x {args.steps} steps, MLPPolicy on map {args.map!r}, "
        f"{torch.get_num_threads()} torch threads"
    )
    columns = ["rule", "batched s", "/ sft's"]
    if not args.batched_only:
        columns += ["sequential s", "seq / batched", "max |Δ probs|"]
    for column in columns:
        table.add_column(column, justify="right")
    totals = [0.0, 0.0]
    batched_times, mismatched = {}, []
    for rule in RULES:
        runs = [timed_run(model, rule, data, seeds, config) for _ in range(args.rounds)]
        batched_time, batched_probs = sorted(runs, key=lambda run: run[0])[len(runs) // 2]  # the median run
        batched_times[rule] = batched_time
        record.number(f"batched_{rule}", batched_time, "s", rule)
        row = [rule, f"{batched_time:.2f}", f"{batched_time / batched_times['sft']:.2f}x"]
        totals[0] += batched_time
        if not args.batched_only:
            runs = [timed_run(model, rule, data, [seed], config) for seed in seeds]
            sequential_time = sum(seconds for seconds, _ in runs)
            gap = (batched_probs - torch.cat([probs for _, probs in runs])).abs().max().item()
            if gap > TOLERANCE:
                mismatched.append(rule)
            row += [f"{sequential_time:.2f}", f"{sequential_time / batched_time:.1f}x",
                    f"{gap:.1e} {'ok' if gap <= TOLERANCE else 'MISMATCH'}"]  # fmt: skip
            totals[1] += sequential_time
            record.number(f"sequential_{rule}", sequential_time / batched_time, "x", rule)
            record.number(f"gap_{rule}", gap, "", rule, ("<=", TOLERANCE))
        table.add_row(*row)
    if not args.batched_only:
        table.add_row("total", f"{totals[0]:.2f}", "", f"{totals[1]:.2f}", f"{totals[1] / totals[0]:.1f}x", "")
    Console(width=120).print(table)
    record.number("ppo_over_sft", batched_times["ppo"] / batched_times["sft"], "x", "PPO / SFT", ("<=", PPO_OVER_SFT))
    record.target(f"PPO, {args.seeds} seeds x {args.steps} steps, within {PPO_OVER_SFT:g}x SFT's time (batched, "
                  f"median of {args.rounds})", "ppo_over_sft", *(f"batched_{rule}" for rule in RULES))  # fmt: skip
    if not args.batched_only:
        record.target(f"batched and seed-by-seed policies agree (max abs difference of the action probabilities at "
                      f"most {TOLERANCE:g}), {args.seeds} seeds x {args.steps} steps",
                      *(f"gap_{rule}" for rule in RULES))  # fmt: skip
        record.number("sequential_total", totals[1] / totals[0], "x", "all rules")
        record.target(f"none (context): {args.seeds} seeds x {args.steps} steps one at a time against batched (time "
                      "one at a time / batched)", *(f"sequential_{rule}" for rule in RULES),
                      "sequential_total")  # fmt: skip
    record.write()
    if mismatched:
        raise SystemExit(f"batched and sequential policies differ by more than {TOLERANCE} for {', '.join(mismatched)}")


if __name__ == "__main__":
    main()
