"""Steps per second of ``iftgym/FrozenLake-v0`` against Gymnasium's ``FrozenLake-v1``, side by side in one run.

Run: ``python benchmarks/bench_env.py [--quick] [--num-envs 1024] [--rounds 7] [--map paper] [--json PATH]``.
Both sides play the same map, with the same step limit and the same pre-drawn uniform random actions, on a
deterministic and on a slippery version of the map:

* one env: ``gym.make("iftgym/FrozenLake-v0")`` against ``gym.make("FrozenLake-v1")``, each reset when its episode
  ends (target: at least parity);
* N copies: the native vector env ``gym.make_vec("iftgym/FrozenLake-v0", num_envs=N)`` against Gymnasium's
  ``SyncVectorEnv`` of ``FrozenLake-v1`` (``vectorization_mode="sync"``), both resetting a finished copy on the next
  step (target: at least 50 times the steps/s at N = 1024).

The machine may be shared and noisy, so the two sides of a comparison take turns, ``--rounds`` times, and the table
shows the median steps/s of each side and the median of the rounds' ratios. A vector step counts N steps (the
autoreset steps included: the same share on both sides). ``--quick`` is a smoke run of a few seconds. ``--json``
writes the ratios and their targets (``benchmarks/_results.py``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
from _results import Results, add_json_option, round_count
from rich.console import Console
from rich.table import Table

import iftgym  # noqa: F401  (registers iftgym/FrozenLake-v0 and its vector entry point)
from iftgym.worlds.frozen_lake.maps import load_map

ENV_ID = "iftgym/FrozenLake-v0"
TARGETS = {"one env": 1.0, "vector": 50.0}
KEYS = {"one env": "one_env", "vector": "vector"}


def single_rate(env: gym.Env, actions: list[int]) -> float:
    """Steps per second of ``env`` over ``actions``, resetting whenever an episode ends."""
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return len(actions) / (time.perf_counter() - start)


def vector_rate(env: gym.vector.VectorEnv, actions: np.ndarray) -> float:
    """Steps per second of the vector env ``env`` over the ``(T, num_envs)`` array ``actions``."""
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return actions.size / (time.perf_counter() - start)


def compare(ours, theirs, rate, ours_actions, theirs_actions, rounds: int) -> tuple[float, float, float]:
    """Median steps/s of each side and median ratio, the sides taking turns ``rounds`` times after a warm-up."""
    rate(ours, ours_actions[:10])
    rate(theirs, theirs_actions[:10])
    pairs = [(rate(ours, ours_actions), rate(theirs, theirs_actions)) for _ in range(rounds)]
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(a / b for a, b in pairs))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--map", default="paper", help="catalogue map name or map file (default paper)")
    parser.add_argument("--num-envs", type=int, default=1024, help="copies in the vector envs (default 1024)")
    parser.add_argument("--rounds", type=round_count, default=7,
                        help="turns each side takes (default 7; 3 with --quick)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a smoke run: few rounds of few steps")
    add_json_option(parser)
    args = parser.parse_args()
    record = Results("bench_env", args)
    rounds = 3 if args.quick else args.rounds
    single_steps, native_steps, sync_steps = (2_000, 50, 3) if args.quick else (20_000, 500, 20)
    n = args.num_envs
    desc = list(load_map(args.map))
    rng = np.random.default_rng(0)

    table = Table(title=f"steps/s on map {args.map!r}, uniform random actions, medians of {rounds} alternating rounds",
                  caption=f"one env: iftgym/FrozenLake-v0 vs FrozenLake-v1 (gym.make); {n} copies: the native vector "
                  "env vs SyncVectorEnv of FrozenLake-v1 (gym.make_vec)")  # fmt: skip
    for column in ("comparison", "slippery", "iftgym", "Gymnasium", "ratio", "target"):
        table.add_column(column, justify="right")
    missed = []
    for slippery in (False, True):
        ours = gym.make(ENV_ID, map=desc, slippery=slippery)
        limit = ours.unwrapped.max_episode_steps  # FrozenLake-v1 gets the same limit (a TimeLimit wrapper)
        theirs = gym.make("FrozenLake-v1", desc=desc, is_slippery=slippery, max_episode_steps=limit)
        actions = rng.integers(0, 4, single_steps).tolist()
        results = {"one env": compare(ours, theirs, single_rate, actions, actions, rounds)}
        native = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", map=desc, slippery=slippery)
        sync = gym.make_vec("FrozenLake-v1", num_envs=n, vectorization_mode="sync", desc=desc, is_slippery=slippery,
                            max_episode_steps=limit)  # fmt: skip
        actions = rng.integers(0, 4, (native_steps, n))
        results["vector"] = compare(native, sync, vector_rate, actions, actions[:sync_steps], rounds)
        native.close()
        sync.close()
        names = {"one env": "one env", "vector": f"{n} copies"}
        for kind, (ours_rate, theirs_rate, ratio) in results.items():
            dynamics = "slippery" if slippery else "deterministic"
            record.number(f"{KEYS[kind]}_{dynamics}", ratio, "x", dynamics, (">=", TARGETS[kind]))
            met = ratio >= TARGETS[kind]
            if not met:
                missed.append(f"{kind} ({'slippery' if slippery else 'deterministic'})")
            table.add_row(names[kind], str(slippery), f"{ours_rate:,.0f}", f"{theirs_rate:,.0f}", f"{ratio:.1f}x",
                          f">= {TARGETS[kind]:g}x {'met' if met else 'MISSED'}")  # fmt: skip
    Console().print(table)
    vector = f"native vector env at least {TARGETS['vector']:g}x Gymnasium's `SyncVectorEnv` of `FrozenLake-v1`"
    record.target(f"{vector} at N = {n} (map {args.map!r})", "vector_deterministic", "vector_slippery")
    record.target(f"single env at least at parity with `FrozenLake-v1` (map {args.map!r})", "one_env_deterministic",
                   "one_env_slippery")  # fmt: skip
    record.write()
    if missed:
        print(f"below target (on a busy machine, run again): {', '.join(missed)}")


if __name__ == "__main__":
    main()
