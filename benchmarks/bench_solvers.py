"""Exact solvers on sparse transitions against the previous release's dense ones, side by side in one run.

Run: ``python benchmarks/bench_solvers.py [--quick] [--side 64] [--large 256] [--seeds 20] [--json PATH]``.

1. On a random ``side x side`` map (hole probability 0.2), deterministic and slippery: value iteration, policy
   evaluation, success probability and occupancy of one policy, timed with the dense algorithms of iftgym 0.1.0
   (an ``S x A x S`` array, value iteration by dense products, ``numpy.linalg.solve``; reproduced below) and with
   :class:`~iftgym.worlds.frozen_lake.FrozenLakeMDP`'s. The largest difference between the two answers is shown
   (target: 1e-10), with the memory of each model (target: under 5 MiB at 64x64) and the speed-up (target: 100x).
2. On a random ``large x large`` map: solving the map and every metric of ``--seeds`` half-trained policies, as a
   comparison does (target: under 5 s at 256x256 = 65,536 states).

``--quick`` runs 24x24 and 96x96 in a few seconds (a smoke run: the targets are for the default sizes). ``--json``
writes the numbers and their targets (``benchmarks/_results.py``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from _results import Results, add_json_option
from rich.console import Console
from rich.table import Table

from iftgym.worlds.frozen_lake.maps import random_map
from iftgym.worlds.frozen_lake.model import SCORES, FrozenLakeMDP

GAMMA = 0.95
MIB = 2**20
SPEEDUP, GAP, MEMORY_MIB, LARGE_SECONDS = 100.0, 1e-10, 5.0, 5.0  # the targets


class DenseSolvers:
    """The dense exact solvers of iftgym 0.1.0, kept here only as the baseline of this benchmark."""

    def __init__(self, model: FrozenLakeMDP) -> None:
        self.P, self.R, self.terminal, self.goal, self.start = (
            model.P, model.R, model.terminal, model.goal_mask, model.start)  # fmt: skip

    def value_iteration(self, tol: float = 1e-12) -> np.ndarray:
        alive, V = ~self.terminal, np.zeros(len(self.R))
        while True:
            new = (self.R + GAMMA * self.P @ (V * alive)).max(axis=1) * alive
            if np.max(np.abs(new - V)) < tol:
                return new
            V = new

    def evaluate(self, policy: np.ndarray) -> np.ndarray:
        chain = np.einsum("sa,sat->st", policy, self.P)
        return np.linalg.solve(np.eye(len(chain)) - GAMMA * chain, (policy * self.R).sum(axis=1))

    def success(self, policy: np.ndarray) -> float:
        chain = np.einsum("sa,sat->st", policy, self.P)
        can_reach = self.goal.copy()
        while True:
            grown = can_reach | (chain[:, can_reach].sum(axis=1) > 0)
            if (grown == can_reach).all():
                break
            can_reach = grown
        probs, idx = self.goal.astype(float), np.flatnonzero(can_reach & ~self.terminal)
        A = np.eye(idx.size) - chain[np.ix_(idx, idx)]
        probs[idx] = np.linalg.solve(A, chain[np.ix_(idx, np.flatnonzero(self.goal))].sum(axis=1))
        return float(probs[self.start])

    def occupancy(self, policy: np.ndarray) -> np.ndarray:
        chain = np.einsum("sa,sat->st", policy, self.P) * ~self.terminal[:, None]
        start = np.zeros(len(chain))
        start[self.start] = 1.0
        return np.linalg.solve(np.eye(len(chain)) - GAMMA * chain.T, start)


def half_trained(model: FrozenLakeMDP, seeds: int) -> np.ndarray:
    """``(K, S, A)`` policies between the optimum and random noise, as mid-training policies are."""
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(model.n_actions), size=(seeds, model.n_states))
    return 0.7 * model.optimal_matrix + 0.3 * noise


def timed(function: Callable[..., object], *args: object) -> tuple[float, object]:
    """Seconds ``function(*args)`` took, and its result."""
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def model_bytes(model: FrozenLakeMDP) -> int:
    return sum(array.nbytes for array in (model.next_cells, model.next_probs, model.R, model.terminal))


def sparse_value_iteration(model: FrozenLakeMDP) -> np.ndarray:
    """Value iteration on a fresh copy of ``model`` (a model keeps its first solution), building it included."""
    return FrozenLakeMDP.from_map(model.desc, model.slippery, model.success_rate, model.gamma).value_iteration()[0]


def against_dense(side: int, console: Console, record: Results) -> None:
    table = Table(title=f"exact solvers on a random {side}x{side} map ({side * side:,} states), one policy")
    for column in ("dynamics", "solver", "dense (0.1.0) s", "sparse s", "speed-up", "max |difference|"):
        table.add_column(column, justify="right")
    rows = random_map(side, 0.2, seed=0)
    for slippery in (False, True):
        dynamics = "slippery" if slippery else "deterministic"
        model = FrozenLakeMDP.from_map(rows, slippery=slippery, gamma=GAMMA)
        dense = DenseSolvers(model)
        dense_mib, sparse_mib = dense.P.nbytes / MIB, model_bytes(model) / MIB
        record.number(f"memory_{dynamics}", sparse_mib, "MiB", dynamics, ("<", MEMORY_MIB))
        record.number(f"dense_memory_{dynamics}", dense_mib, "MiB", "the dense `S x A x S` array")
        gaps = {}
        table.add_row(dynamics, "model memory", f"{dense_mib:.1f} MiB", f"{sparse_mib:.2f} MiB",
                      f"{dense_mib / sparse_mib:.0f}x smaller", "")  # fmt: skip
        policy = half_trained(model, 1)[0]
        cases = {
            "value iteration": (dense.value_iteration, (), sparse_value_iteration, (model,)),
            "policy evaluation": (dense.evaluate, (policy,), model.evaluate, (policy,)),
            "success probability": (dense.success, (policy,), model.success_probability, (policy,)),
            "occupancy": (dense.occupancy, (policy,), model.occupancy, (policy,)),
        }
        for name, (old, old_args, new, new_args) in cases.items():
            old_seconds, old_value = timed(old, *old_args)
            new_seconds, new_value = timed(new, *new_args)
            gap = np.max(np.abs(np.asarray(old_value) - np.asarray(new_value)))
            record.number(f"speedup_{name}_{dynamics}", old_seconds / new_seconds, "x", f"{name}, {dynamics}",
                          (">=", SPEEDUP))  # fmt: skip
            gaps[name] = float(gap)
            table.add_row(dynamics, name, f"{old_seconds:.3f}", f"{new_seconds:.4f}",
                          f"{old_seconds / new_seconds:,.0f}x", f"{gap:.1e}")  # fmt: skip
        del dense
        worst = max(gaps, key=gaps.get)
        record.number(f"gap_{dynamics}", gaps[worst], "", f"{dynamics} (largest: {worst})", ("<=", GAP))
    console.print(table)
    solvers = ("value iteration", "policy evaluation", "success probability", "occupancy")
    record.target(f"exact solvers on {side}x{side} ({side * side:,} states) at least {SPEEDUP:g}x faster than 0.1.0's "
                  "dense ones", *(f"speedup_{name}_{dynamics}" for name in solvers
                                  for dynamics in ("deterministic", "slippery")))  # fmt: skip
    record.target(f"their answers within {GAP:g} of the dense ones' (largest difference of the four solvers)",
                  "gap_deterministic", "gap_slippery")  # fmt: skip
    record.target(f"model memory under {MEMORY_MIB:g} MiB at {side}x{side}", "memory_deterministic", "memory_slippery",
                  "dense_memory_deterministic")  # fmt: skip


def large_map(side: int, seeds: int, console: Console, record: Results) -> None:
    table = Table(title=f"a random {side}x{side} map ({side * side:,} states): solve it and score {seeds} policies")
    table.add_column("dynamics")
    for column in ("solve s", *(f"{name} s" for name in SCORES), "total s"):
        table.add_column(column, justify="right")
    rows = random_map(side, 0.2, seed=0)
    for slippery in (False, True):
        start = time.perf_counter()
        model = FrozenLakeMDP.from_map(rows, slippery=slippery, gamma=GAMMA)
        solve_seconds, _ = timed(sparse_value_iteration, model)
        policies = half_trained(model, seeds)
        metric_seconds = [timed(model.scores, policies, [name])[0] for name in SCORES]
        total = time.perf_counter() - start
        dynamics = "slippery" if slippery else "deterministic"
        record.number(f"large_{dynamics}", total, "s", dynamics, ("<", LARGE_SECONDS))
        record.number(f"large_solve_{dynamics}", solve_seconds, "s", f"{dynamics}: solve")
        for name, seconds in zip(SCORES, metric_seconds):
            record.number(f"large_{name}_{dynamics}", seconds, "s", f"{dynamics}: {name}")
        table.add_row("slippery" if slippery else "deterministic", f"{solve_seconds:.2f}",
                      *(f"{s:.2f}" for s in metric_seconds), f"{total:.2f}")  # fmt: skip
    console.print(table)
    record.target(f"{side}x{side} ({side * side:,} states): solve the map and every metric of {seeds} seeds in under "
                  f"{LARGE_SECONDS:g} s", *(f"large_{part}{dynamics}" for dynamics in ("deterministic", "slippery")
                                            for part in ("", "solve_", *(f"{name}_" for name in SCORES))))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="24x24 and 96x96: a smoke run of a few seconds")
    parser.add_argument("--side", type=int, default=64, help="side of the map for the dense comparison (default 64)")
    parser.add_argument("--large", type=int, default=256, help="side of the large map (default 256)")
    parser.add_argument("--seeds", type=int, default=20, help="policies scored on the large map (default 20)")
    add_json_option(parser)
    args = parser.parse_args()
    record = Results("bench_solvers", args)
    side, large = (24, 96) if args.quick else (args.side, args.large)
    console = Console(width=120)
    against_dense(side, console, record)
    large_map(large, args.seeds, console, record)
    record.write()


if __name__ == "__main__":
    main()
