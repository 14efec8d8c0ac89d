"""The paper's Frozen Lake experiment: train every algorithm on the same map and seeds, score them exactly.

For each map: SFT and IFT learn from the optimal demonstration, DPO and ORPO from (optimal, sub-optimal) pairs,
PPO and REINFORCE from the environment's reward, Stable-Baselines3's PPO as an external baseline, and any rule a
user registered from whatever it declares it trains on. All seeds of an algorithm train at once as one batched
model, and every metric is computed by dynamic programming on the exact model (no Monte Carlo):
:meth:`FrozenLakeMDP.scores` (``mse``, ``success``, ``greedy_success``, ``explored``) and ``bias``, SFT-style
log-optimism along the optimal demonstration (:func:`iftgym.metrics.estimators.demonstration_log_bias`).

:func:`compare` returns the results, typed (:class:`iftgym.experiments.results.CompareResult`), and prints nothing;
``iftgym compare`` renders them and writes their JSON form.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from iftgym.experiments import runner
from iftgym.experiments.baselines import SB3Job, sb3_tasks
from iftgym.experiments.config import FROZEN_LAKE, SB3, CompareConfig
from iftgym.experiments.config import REFERENCES as WORLD_REFERENCES
from iftgym.experiments.paired import flag_worse_than_untrained, paired_statistics, scored
from iftgym.experiments.results import GRID_METRICS, AlgorithmResult, CompareResult, Grid, Row, Skipped, WorldResult
from iftgym.experiments.worlds import compare_world
from iftgym.loop import StepLog
from iftgym.metrics.decompose import DECOMPOSED, decomposed_scores, demonstrated_cells
from iftgym.metrics.estimators import demonstration_log_bias
from iftgym.metrics.rollouts import rollout_scores
from iftgym.metrics.stats import summarize
from iftgym.parallel import Task, check_workers, in_background
from iftgym.policies.base import Policy
from iftgym.policies.registry import build_policy
from iftgym.registry import from_plugin, load_plugin
from iftgym.rules.registry import RULES, base_name, is_built_in, parse_recipe
from iftgym.types import TrainingData
from iftgym.worlds.frozen_lake.maps import random_map
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

METRICS = ("mse", "success", "greedy_success", "explored", "bias", *DECOMPOSED)
LOWER_IS_BETTER = {name: metric.lower_is_better for name, metric in GRID_METRICS.items()}
# metrics that are probabilities: their confidence intervals are clipped to [0, 1]
BOUNDS = {name: (0.0, 1.0) for name in ("success", "greedy_success", "optimal_mass", "optimal_mass_own_visits")}
REFERENCES = WORLD_REFERENCES[FROZEN_LAKE]
NO_SECOND_ROUTE = "map has no sub-optimal route"  # why a pair rule is skipped on a map
SB3_NO_UPDATE = (f"{SB3} is Stable-Baselines3's PPO, trained outside iftgym's loop: it has no rule whose next step "
                 "could be taken")  # fmt: skip


def named_maps(config: CompareConfig) -> list[tuple[str, FrozenLakeMDP]]:
    """The maps of a run: the named ones, or ``random_maps`` random maps of side ``size`` (seeds 0..N-1)."""
    if config.random_maps:
        specs = [(f"random-{config.size}x{config.size}-seed{i}", random_map(config.size, config.p_hole, seed=i))
                 for i in range(config.random_maps)]  # fmt: skip
    else:
        specs = [(name, name) for name in config.maps]
    return [(name, FrozenLakeMDP.from_map(spec, config.slippery, config.success_rate, config.gamma))
            for name, spec in specs]  # fmt: skip


def run_algorithm(
    model: FrozenLakeMDP,
    algo: str,
    data: TrainingData,
    config: CompareConfig,
    seeds: list[int] | None = None,
    budget_amount: float | None = None,
) -> dict[str, Any]:
    """Train one rule or recipe on all seeds at once (``seeds``, default ``0..config.seeds-1``) through the one
    runner: ``{"policies": (K, S, A), "curves": ..., "stages": [...], "history": ...}``, or ``{"skipped": reason}``
    when the map lacks its data. With ``config.update_maps`` also ``"update"``, the numbers and mean fields of its
    update fields at the start, middle and end of training (:class:`iftgym.metrics.update.UpdateRecorder`), and
    ``"update_changes"``, their per-seed predicted changes ``{step: (K, S, A)}`` (for the cosines between rules).
    ``budget_amount``: the token passes or seconds it may spend (``config.budget``), ``None`` for its steps; the
    compute it spent is ``"compute"``."""
    seeds = list(range(config.seeds)) if seeds is None else seeds
    recorder = None
    if config.update_maps:
        from iftgym.metrics.update import UpdateRecorder, training_points

        recorder = UpdateRecorder(model, data, training_points(config.steps), config.seed)
    run = runner.run_algorithm(
        algo, config.stages(algo), model, data, lambda: make_policy(model, config, seeds),
        config.train_config(budget_amount=budget_amount),
        callback=lambda step, p: evaluate(model, p, data), no_pairs=NO_SECOND_ROUTE, snapshot=recorder,
    )  # fmt: skip
    if run.skipped is not None:
        return {"skipped": run.skipped}
    common = {"curves": run.curves(("mse", "success")), "stages": run.stage_specs(), "history": run.history_means(),
              "compute": run.compute}  # fmt: skip
    if recorder is not None:
        common.update(update=recorder.result(), update_changes=recorder.changes)
    if not run.policy.markov:  # no policy matrix: scored from its own rollouts
        return {"scores": rollout_scores(model, run.policy, data.demos), **common}
    return {"policies": run.policy.action_probs().numpy().astype(float), **common}


def make_policy(model: FrozenLakeMDP, config: CompareConfig, seeds: list[int]) -> Policy:
    """The run's policy kind (``config.policy``) for ``model``, one copy per seed."""
    return build_policy(config.policy, model.n_states, model.n_actions, seeds, hidden=config.hidden)


def evaluate(model: FrozenLakeMDP, policy: Policy, data: TrainingData) -> dict[str, np.ndarray]:
    """What the training curves show: ``mse`` and ``success``, exact for a Markov policy; for a policy with memory,
    ``success`` from 50 rollouts per seed and ``mse`` along its own rollouts (``mse_own_visits``)."""
    if policy.markov:
        return model.scores(policy, ("mse", "success"))
    scores = rollout_scores(model, policy, data.demos, episodes=50)
    return {"mse": scores["mse_own_visits"], "success": scores["success"]}


def score(model: FrozenLakeMDP, policies: np.ndarray, data: TrainingData) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` for policy matrices ``(K, S, A)``, one ``(K,)`` array each."""
    demo = model.optimal_demonstration(rng=0)
    return {**model.scores(policies), "bias": demonstration_log_bias(model, policies, demo),
            **decomposed_scores(model, policies, data.demos)}  # fmt: skip


def reference_rows(model: FrozenLakeMDP, data: TrainingData, config: CompareConfig) -> dict[str, Row]:
    """The :data:`REFERENCES`, scored: the uniform policy, the network every seed starts from (untrained; from its
    rollouts when it has memory), and the policy that copies the demonstrations' actions where they act (uniform
    elsewhere)."""
    shape = (config.seeds, model.n_states, model.n_actions)
    counts = np.zeros(shape[1:])
    demos = data.demos
    np.add.at(counts, (demos.ids[demos.mask].numpy(), demos.actions[demos.mask].numpy()), 1.0)
    seen = counts.sum(-1, keepdims=True) > 0
    copy = np.where(seen, counts / np.maximum(counts.sum(-1, keepdims=True), 1), 1 / model.n_actions)
    untrained = make_policy(model, config, list(range(config.seeds)))
    return {
        "uniform": scored(score(model, np.full(shape, 1 / model.n_actions), data), BOUNDS),
        "untrained": scored(score(model, untrained.action_probs().numpy().astype(float), data) if untrained.markov
                            else complete(rollout_scores(model, untrained, data.demos)), BOUNDS),
        "demo-copy": scored(score(model, np.broadcast_to(copy, shape).copy(), data), BOUNDS),
    }  # fmt: skip


def complete(metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``metrics`` with every one of :data:`METRICS`, NaN where not measured (in :data:`METRICS`' order)."""
    k = len(next(iter(metrics.values())))
    return {name: metrics.get(name, np.full(k, np.nan)) for name in METRICS}


def sb3_jobs(config: CompareConfig, model: FrozenLakeMDP) -> list[SB3Job]:
    """The SB3 seeds of one map."""
    return [SB3Job(tuple(model.desc), config.slippery, config.success_rate, seed, config.sb3_timesteps)
            for seed in range(config.seeds)]  # fmt: skip


def compare(
    config: CompareConfig,
    progress: Callable[[str], None] | None = None,
    cache: str | os.PathLike | None = None,
    workers: int | None = None,
    log: StepLog | None = None,
    save: str | os.PathLike | None = None,
    bars: bool = False,
) -> CompareResult:
    """Run the comparison in ``config.world`` and return its typed results (``.to_json()``: ``results.json``):
    Frozen Lake here (its maps, exact scores, SB3 and worker processes), any other world through
    :func:`iftgym.experiments.worlds.compare_world` (the same rows, references and paired statistics).

    Args:
        config: what to run.
        progress: called with a short description before each algorithm is waited for (and each SB3 seed).
        cache: a folder for SB3's per-seed policies (``iftgym compare`` uses ``OUT/.iftgym-cache/sb3``): a re-run
            reads them back instead of training again. ``None``: no cache.
        workers: processes that train the algorithms (iftgym's own rules and SB3's seeds) beside this one, which
            trains too (a rule registered by the caller always here); default: one per core but one; ``0``:
            everything here. Results do not depend on it: every algorithm and seed trains with its own generators
            and ``config.threads`` threads wherever it runs.

        log: receives every step's metrics (``{"algorithm", "step", "stage", "rule", metric: [per seed]}``).
        save: a folder that receives each trained model (``save/<algorithm>``; the token world).
        bars: show a progress bar per training stage.

    Torch and the BLAS libraries run with ``config.threads`` threads meanwhile (restored afterwards).
    """
    check_workers(workers)
    with math_threads(config.threads):
        if config.world != FROZEN_LAKE:
            return compare_world(config, progress or (lambda text: None), log, save, bars)
        return _compare(config, progress or (lambda text: None), cache, workers)


@contextmanager
def math_threads(threads: int) -> Iterator[None]:
    """Torch and the BLAS libraries with ``threads`` threads inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


def train_on_rows(
    rows: tuple[str, ...], algo: str, config: CompareConfig, budget_amount: float | None = None
) -> tuple[dict[str, Any], float]:
    """:func:`run_algorithm` on the map ``rows`` with ``config``'s dynamics (and ``budget_amount``), and the seconds it
    took; what a worker process runs (it rebuilds the model and the data from plain values)."""
    for plugin in config.plugins:  # a worker process registers what the caller's plugins register
        load_plugin(plugin)
    with math_threads(config.threads):
        start = time.perf_counter()
        model = FrozenLakeMDP.from_map(list(rows), config.slippery, config.success_rate, config.gamma)
        run = run_algorithm(model, algo, model.training_data(config.demos), config, budget_amount=budget_amount)
        return run, time.perf_counter() - start


def in_worker(algo: str, plugins: list[str]) -> bool:
    """Whether every rule of ``algo`` is one a worker process knows by name: a built-in, or one that a ``--plugin``
    (which every worker loads too) registers; a rule registered by the caller's own code trains here."""
    return all(is_built_in(name) or from_plugin(RULES.get(base_name(name)), plugins) for name in parse_recipe(algo))


def _compare(
    config: CompareConfig, progress: Callable[[str], None], cache: str | os.PathLike | None, workers: int | None
) -> CompareResult:
    results = CompareResult(FROZEN_LAKE, asdict(config), [])
    maps = named_maps(config)
    rules = [algo for algo in config.algos if algo != SB3]
    for _, model in maps:
        runner.check_batches([config.stages(algo) for algo in rules], model.training_data(config.demos),
                             config.batch_size, config.grad_accum)  # fmt: skip
    jobs = {name: sb3_jobs(config, model) for name, model in maps} if SB3 in config.algos else {}
    sb3_done, sb3_todo = sb3_tasks([job for seeds in jobs.values() for job in seeds], cache)
    # an equal budget of token passes or seconds: the budget's baseline trains its steps first, on every map; what it
    # spent there is every other algorithm's budget on that map
    first, amounts = config.budget_baseline(), {}
    done: dict[Any, tuple[dict[str, Any], float]] = {}
    for name, model in maps if first is not None else ():
        progress(f"{name}: {first} (the budget's baseline)")
        done[(name, first)] = train_on_rows(tuple(model.desc), first, config)
        amounts[name] = done[(name, first)][0].get("compute", {}).get(config.budget)
    # every algorithm a worker can train starts now, the rules first and SB3's short seeds after them (they fill
    # the gaps); this process trains too while it waits, scores each result as it comes, and trains the caller's
    # own registered rules
    tasks: dict[Any, Task] = {(name, algo): (train_on_rows, (tuple(model.desc), algo, config, amounts.get(name)))
                              for name, model in maps for algo in rules
                              if in_worker(algo, config.plugins) and (name, algo) not in done}  # fmt: skip
    with in_background({**tasks, **sb3_todo}, workers) as result:
        for name, model in maps:
            data = model.training_data(config.demos)
            values, _, optimal = model.value_iteration()
            grid = Grid(list(model.desc), optimal.tolist(), values.tolist(), model.success_probability(optimal),
                        np.flatnonzero(demonstrated_cells(model, data.demos)).tolist())  # fmt: skip
            entry = WorldResult(name, {}, metrics=dict(GRID_METRICS), grid=grid)
            changes: dict[str, dict[int, np.ndarray]] = {}  # each algorithm's update fields, per seed, by step
            for algo in config.algos:
                progress(f"{name}: {algo}")
                if algo == SB3:
                    seeds = []
                    for i, job in enumerate(jobs[name]):
                        progress(f"{name}: {algo} ({i}/{config.seeds} seeds done)")
                        seeds.append(sb3_done[job] if job in sb3_done else result(job))
                    run = {"policies": np.stack([policy for policy, _ in seeds]), "curves": {}, "stages": [],
                           "history": {}}  # fmt: skip
                    if config.update_maps:
                        run["update"] = {"skipped": SB3_NO_UPDATE}
                    wall = sum(seconds for _, seconds in seeds)  # its seeds' training time, wherever they trained
                elif (name, algo) in done:
                    run, wall = done[(name, algo)]
                elif (name, algo) in tasks:
                    run, wall = result((name, algo))
                else:
                    start = time.perf_counter()
                    run = run_algorithm(model, algo, data, config, budget_amount=amounts.get(name))
                    wall = time.perf_counter() - start
                if "skipped" in run:
                    entry.algorithms[algo] = Skipped(run["skipped"])
                    continue
                policies = run["policies"].tolist() if "policies" in run else None
                row = scored(score(model, run["policies"], data) if "policies" in run else complete(run["scores"]),
                             BOUNDS)  # fmt: skip
                update = run.get("update")
                wall -= (update or {}).get("seconds", 0.0)  # the training's time: the update maps are timed apart
                changes[algo] = run.get("update_changes", {})
                entry.algorithms[algo] = AlgorithmResult(row.per_seed, row.summary, wall, run["stages"],
                                                         run["curves"], run["history"], policies,
                                                         update=update, compute=run.get("compute"))  # fmt: skip
            if config.update_maps:
                entry.update = update_alignment(changes, model, data, config)
            entry.references = reference_rows(model, data, config)
            entry.paired = paired_statistics([entry], config.baseline, LOWER_IS_BETTER)
            flag_worse_than_untrained(entry, "mse")
            results.maps.append(entry)
    if len(results.maps) > 1:
        results.across_maps = across_maps(results)
        results.paired_across_maps = paired_statistics(results.maps, config.baseline, LOWER_IS_BETTER)
    return results


def update_alignment(
    changes: dict[str, dict[int, np.ndarray]], model: FrozenLakeMDP, data: TrainingData, config: CompareConfig
) -> dict[str, Any]:
    """The cosines between the algorithms' update fields at each training point (``WorldResult.update``):
    ``{"alignment": [{"step": s, "pairs": {"a | b": {"all": cos, "untrained": cos}}}]}``, each the mean over seeds of
    the per-seed cosine of two algorithms' predicted changes of log pi (:func:`iftgym.metrics.update.pair_alignment`;
    at step 0 every algorithm's policy is the same network, later each its own)."""
    from iftgym.metrics.update import pair_alignment, training_points

    points = []
    for step in training_points(config.steps):
        at = {algo: by_step[step] for algo, by_step in changes.items() if step in by_step}
        points.append({"step": step, "pairs": pair_alignment(at, model, data)})
    return {"alignment": points}


def across_maps(results: CompareResult) -> dict[str, Any]:
    """Per algorithm: each metric's per-map mean over seeds, summarised over the maps where every algorithm ran
    (``maps``: how many; a rule that needs a second route is skipped on maps without one, and comparing means over
    different maps would compare the maps), and how often it ranks first there."""
    summary: dict[str, Any] = {}
    algos = list(results.config["algos"])
    complete = [entry for entry in results.maps if set(algos) <= set(entry.trained())]
    for metric in ("mse", "success", "explored"):
        per_map: dict[str, list[float]] = {a: [] for a in algos}
        wins = dict.fromkeys(algos, 0)
        for entry in complete:
            means = {a: float(np.mean(entry.trained()[a].per_seed[metric])) for a in algos}
            for a, m in means.items():
                per_map[a].append(m)
            best = (min if LOWER_IS_BETTER[metric] else max)(means.values())
            for a, m in means.items():  # a tie is a win for each algorithm that attains the best
                wins[a] += bool(np.isclose(m, best, rtol=0, atol=1e-9))
        summary[metric] = {a: {**summarize(np.array(v), BOUNDS.get(metric)), "maps": len(v), "wins": wins[a]}
                           for a, v in per_map.items() if v}  # fmt: skip
    summary["maps"], summary["maps_total"] = len(complete), len(results.maps)
    return summary
