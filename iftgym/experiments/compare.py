"""The paper's Frozen Lake experiment: train every algorithm on the same map and seeds, score them exactly.

For each map: SFT and IFT learn from the optimal demonstration, DPO and ORPO from (optimal, sub-optimal) pairs,
PPO and REINFORCE from the environment's reward, Stable-Baselines3's PPO as an external baseline, and any rule a
user registered from whatever it declares it trains on. All seeds of an algorithm train at once as one batched
model, and every metric is computed by dynamic programming on the exact model (no Monte Carlo):
:meth:`FrozenLakeMDP.scores` (``mse``, ``success``, ``greedy_success``, ``explored``) and ``bias``, SFT-style
log-optimism along the optimal demonstration (:func:`iftgym.metrics.estimators.demonstration_log_bias`).

:func:`compare` returns the results as a JSON-ready dict and prints nothing; ``iftgym compare`` renders them.
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
from iftgym.experiments.worlds import compare_world
from iftgym.io import read_json
from iftgym.loop import StepLog, TrainConfig
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
from iftgym.validate import between
from iftgym.version import __version__
from iftgym.worlds.frozen_lake.maps import random_map, validate_map
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP, check_gamma

METRICS = ("mse", "success", "greedy_success", "explored", "bias", *DECOMPOSED)
LOWER_IS_BETTER = {"mse": True, "success": False, "greedy_success": False, "explored": False, "bias": True,
                   "mse_demo": True, "mse_rest": True, "mse_optimal_visits": True, "mse_own_visits": True,
                   "optimal_mass": False, "optimal_mass_own_visits": False}  # fmt: skip
# metrics that are probabilities: their confidence intervals are clipped to [0, 1]
BOUNDS = {name: (0.0, 1.0) for name in ("success", "greedy_success", "optimal_mass", "optimal_mass_own_visits")}
REFERENCES = WORLD_REFERENCES[FROZEN_LAKE]
NO_SECOND_ROUTE = "map has no sub-optimal route"  # why a pair rule is skipped on a map
SCHEMA = "iftgym.compare/1"


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
    model: FrozenLakeMDP, algo: str, data: TrainingData, config: CompareConfig, seeds: list[int] | None = None
) -> dict[str, Any]:
    """Train one rule or recipe on all seeds at once (``seeds``, default ``0..config.seeds-1``) through the one
    runner: ``{"policies": (K, S, A), "curves": ..., "stages": [...], "history": ...}``, or ``{"skipped": reason}``
    when the map lacks its data."""
    seeds = list(range(config.seeds)) if seeds is None else seeds
    run = runner.run_algorithm(
        algo, config.stages(algo), model, data, lambda: make_policy(model, config, seeds),
        TrainConfig(steps=config.steps, lr=config.lr, batch_size=config.batch_size, seed=config.seed,
                    eval_every=config.eval_every),
        callback=lambda step, p: evaluate(model, p, data), no_pairs=NO_SECOND_ROUTE,
    )  # fmt: skip
    if run.skipped is not None:
        return {"skipped": run.skipped}
    common = {"curves": run.curves(("mse", "success")), "stages": run.stage_specs(), "history": run.history_means()}
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


def reference_rows(model: FrozenLakeMDP, data: TrainingData, config: CompareConfig) -> dict[str, dict[str, Any]]:
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
) -> dict[str, Any]:
    """Run the comparison in ``config.world`` and return the results as a JSON-ready dict (see :data:`SCHEMA`):
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


def train_on_rows(rows: tuple[str, ...], algo: str, config: CompareConfig) -> tuple[dict[str, Any], float]:
    """:func:`run_algorithm` on the map ``rows`` with ``config``'s dynamics, and the seconds it took; what a worker
    process runs (it rebuilds the model and the data from plain values)."""
    for plugin in config.plugins:  # a worker process registers what the caller's plugins register
        load_plugin(plugin)
    with math_threads(config.threads):
        start = time.perf_counter()
        model = FrozenLakeMDP.from_map(list(rows), config.slippery, config.success_rate, config.gamma)
        run = run_algorithm(model, algo, model.training_data(config.demos), config)
        return run, time.perf_counter() - start


def _in_worker(algo: str, plugins: list[str]) -> bool:
    """Whether every rule of ``algo`` is one a worker process knows by name: a built-in, or one that a ``--plugin``
    (which every worker loads too) registers; a rule registered by the caller's own code trains here."""
    return all(is_built_in(name) or from_plugin(RULES.get(base_name(name)), plugins) for name in parse_recipe(algo))


def _compare(
    config: CompareConfig, progress: Callable[[str], None], cache: str | os.PathLike | None, workers: int | None
) -> dict[str, Any]:
    results: dict[str, Any] = {"schema": SCHEMA, "version": __version__, "config": asdict(config), "maps": []}
    maps = named_maps(config)
    rules = [algo for algo in config.algos if algo != SB3]
    jobs = {name: sb3_jobs(config, model) for name, model in maps} if SB3 in config.algos else {}
    sb3_done, sb3_todo = sb3_tasks([job for seeds in jobs.values() for job in seeds], cache)
    # every algorithm a worker can train starts now, the rules first and SB3's short seeds after them (they fill
    # the gaps); this process trains too while it waits, scores each result as it comes, and trains the caller's
    # own registered rules
    tasks: dict[Any, Task] = {(name, algo): (train_on_rows, (tuple(model.desc), algo, config)) for name, model in maps
                              for algo in rules if _in_worker(algo, config.plugins)}  # fmt: skip
    with in_background({**tasks, **sb3_todo}, workers) as result:
        for name, model in maps:
            data = model.training_data(config.demos)
            values, _, optimal = model.value_iteration()
            entry: dict[str, Any] = {
                "name": name,
                "rows": list(model.desc),
                "optimal": {
                    "policy": optimal.tolist(),
                    "values": values.tolist(),
                    "success": model.success_probability(optimal),
                },
                "demonstrated": np.flatnonzero(demonstrated_cells(model, data.demos)).tolist(),
                "algorithms": {},
            }
            for algo in config.algos:
                progress(f"{name}: {algo}")
                if algo == SB3:
                    seeds = []
                    for i, job in enumerate(jobs[name]):
                        progress(f"{name}: {algo} ({i}/{config.seeds} seeds done)")
                        seeds.append(sb3_done[job] if job in sb3_done else result(job))
                    run = {"policies": np.stack([policy for policy, _ in seeds]), "curves": {}, "stages": []}
                    wall = sum(seconds for _, seconds in seeds)  # its seeds' training time, wherever they trained
                elif (name, algo) in tasks:
                    run, wall = result((name, algo))
                else:
                    start = time.perf_counter()
                    run = run_algorithm(model, algo, data, config)
                    wall = time.perf_counter() - start
                if "skipped" in run:
                    entry["algorithms"][algo] = run
                    continue
                matrices = {"policies": run["policies"].tolist()} if "policies" in run else {}
                metrics = score(model, run["policies"], data) if "policies" in run else complete(run["scores"])
                entry["algorithms"][algo] = {
                    "wall_time": wall,
                    "stages": run["stages"],
                    **scored(metrics, BOUNDS),
                    **matrices,
                    "curves": run["curves"],
                }
            entry["references"] = reference_rows(model, data, config)
            entry["paired"] = paired_statistics([entry], config.baseline, LOWER_IS_BETTER)
            flag_worse_than_untrained(entry, LOWER_IS_BETTER, "mse")
            results["maps"].append(entry)
    if len(results["maps"]) > 1:
        results["across_maps"] = across_maps(results)
        results["paired_across_maps"] = paired_statistics(results["maps"], config.baseline, LOWER_IS_BETTER)
    return results


def across_maps(results: dict[str, Any]) -> dict[str, Any]:
    """Per algorithm: each metric's per-map mean over seeds, summarised over the maps where every algorithm ran
    (``maps``: how many; a rule that needs a second route is skipped on maps without one, and comparing means over
    different maps would compare the maps), and how often it ranks first there."""
    summary: dict[str, Any] = {}
    algos = list(results["config"]["algos"])
    complete = [entry for entry in results["maps"]
                if all("per_seed" in entry["algorithms"].get(a, {}) for a in algos)]  # fmt: skip
    for metric in ("mse", "success", "explored"):
        per_map: dict[str, list[float]] = {a: [] for a in algos}
        wins = dict.fromkeys(algos, 0)
        for entry in complete:
            means = {a: float(np.mean(entry["algorithms"][a]["per_seed"][metric])) for a in algos}
            for a, m in means.items():
                per_map[a].append(m)
            best = (min if LOWER_IS_BETTER[metric] else max)(means.values())
            for a, m in means.items():  # a tie is a win for each algorithm that attains the best
                wins[a] += bool(np.isclose(m, best, rtol=0, atol=1e-9))
        summary[metric] = {a: {**summarize(np.array(v), BOUNDS.get(metric)), "maps": len(v), "wins": wins[a]}
                           for a, v in per_map.items() if v}  # fmt: skip
    summary["maps"], summary["maps_total"] = len(complete), len(results["maps"])
    return summary


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``results.json`` written by ``iftgym compare``, checking its schema and every field that figures and
    tables read (types, the shapes of policies, values and curves, finite numbers, probability rows), so a damaged
    or crafted file is one ``ValueError`` naming the file and the first bad field rather than a failure half-way
    through drawing."""
    data = read_json(path, "results file")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"results file {str(path)!r} is not an iftgym compare result (expected schema {SCHEMA})")
    try:
        _check_results(data)
    except ValueError as err:
        raise ValueError(f"results file {str(path)!r} is damaged: {err}") from None
    return data


# how load_results names the JSON types it expects and finds
_KINDS = {bool: "true or false", float: "a number", str: "a string", list: "a list", dict: "an object"}


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return _KINDS[bool]
    return next((name for kind, name in _KINDS.items() if _is(value, kind)), type(value).__name__)


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def _shown(key: str) -> str:
    """A key of the file as an error message shows it: cut to a readable length."""
    return key if len(key) <= 40 and key.isprintable() else repr(key[:40]) + "…"


def _field(obj: dict[str, Any], key: str, kind: type, where: str, required: bool = True) -> Any:
    """``obj[key]``, which must be of ``kind`` (``float``: any JSON number); ``None`` when it is absent and not
    ``required``."""
    if key not in obj:
        if required:
            raise ValueError(f"{where}.{key} is missing")
        return None
    if not _is(obj[key], kind):
        raise ValueError(f"{where}.{key} is {_kind_of(obj[key])}: expected {_KINDS[kind]}")
    return obj[key]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} is {_kind_of(value)}: expected an object")
    return value


def _array(
    obj: dict[str, Any], key: str, where: str, shape: tuple[int | str, ...], distribution: bool = False
) -> np.ndarray:
    """``obj[key]`` as a finite numeric array of ``shape`` (a name stands for any size from 1 up); with
    ``distribution``, its last axis holds probability distributions (non-negative, summing to 1 within 1e-6)."""
    value, where = _field(obj, key, list, where), f"{where}.{key}"
    expected = f"({', '.join(map(str, shape))})" if len(shape) > 1 else f"({shape[0]},)"
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError, RecursionError):  # ragged, or nested past numpy's limit
        array = np.array(None)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{where} is not a list of numbers of shape {expected} (ragged, or holds other values)")
    if array.ndim != len(shape) or any(s != n if isinstance(n, int) else s < 1 for s, n in zip(array.shape, shape)):
        raise ValueError(f"{where} has shape {array.shape}: expected {expected}")
    if not np.isfinite(array).all():
        raise ValueError(f"{where} holds a number that is not finite (NaN or infinity)")
    if distribution and not ((array >= 0).all() and np.allclose(array.sum(-1), 1, rtol=0, atol=1e-6)):
        raise ValueError(f"{where} has a row that is not a probability distribution (non-negative, summing to 1)")
    return array


def _check_summary(summary: dict[str, Any], where: str) -> None:
    """Each metric's summary that tables read: ``null`` or ``{"mean", "ci95_low", "ci95_high"}``, numbers or
    ``null`` (not measured; a single seed has no interval)."""
    for metric in METRICS:
        stats = summary.get(metric)
        if stats is not None:
            stats = _object(stats, f"{where}.{metric}")
            for key in ("mean", "ci95_low", "ci95_high"):
                if key not in stats or stats[key] is not None:
                    _field(stats, key, float, f"{where}.{metric}")


def _check_row(result: Any, where: str, cells: int) -> None:
    """One algorithm's entry of a map: trained (a summary and its wall time) or skipped (the reason), with its
    policies ``(seeds, cells, 4)`` and curves where it has them."""
    result = _object(result, where)
    if "policies" in result:
        _array(result, "policies", where, ("seeds", cells, 4), distribution=True)
    curves = result.get("curves")
    if curves is not None and _object(curves, f"{where}.curves").get("steps"):
        steps = _array(curves, "steps", f"{where}.curves", ("evaluations",))
        for key in ("mse", "success"):
            _array(curves, key, f"{where}.curves", ("seeds", len(steps)))
    if "summary" in result:
        _check_summary(_field(result, "summary", dict, where), f"{where}.summary")
        _field(result, "wall_time", float, where)
    elif not isinstance(result.get("skipped"), str):
        raise ValueError(f"{where} has neither a summary nor the reason it was skipped")


def _check_map(entry: Any, where: str) -> None:
    """One map of a results file: its name and rows, the optimal policy, values and success, the demonstrated
    cells, each algorithm's row and the reference rows."""
    entry = _object(entry, where)
    _field(entry, "name", str, where)
    try:
        rows = validate_map(_field(entry, "rows", list, where))
    except ValueError as err:
        raise ValueError(f"{where}.rows is not a map: {err}") from None
    cells = len(rows) * len(rows[0])
    optimal = _field(entry, "optimal", dict, where)
    _array(optimal, "policy", f"{where}.optimal", (cells, 4), distribution=True)
    _array(optimal, "values", f"{where}.optimal", (cells,))
    _field(optimal, "success", float, f"{where}.optimal")
    demonstrated = _field(entry, "demonstrated", list, where, required=False) or []
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < cells for c in demonstrated):
        raise ValueError(f"{where}.demonstrated is not a list of cells: expected integers from 0 to {cells - 1}")
    for algo, result in _field(entry, "algorithms", dict, where).items():
        _check_row(result, f"{where}.algorithms.{_shown(algo)}", cells)
    for name, result in (_field(entry, "references", dict, where, required=False) or {}).items():
        row = f"{where}.references.{_shown(name)}"
        _check_summary(_field(_object(result, row), "summary", dict, row), f"{row}.summary")


def _check_results(data: dict[str, Any]) -> None:
    """Every field of a results file that ``iftgym plot`` reads; a ``ValueError`` names the first bad one."""
    config = data.get("config")
    if not isinstance(config, dict):
        raise ValueError("config is not an object")
    _field(config, "slippery", bool, "config")
    _field(config, "algos", list, "config")
    if config.get("baseline") is not None:
        _field(config, "baseline", str, "config")
    try:
        between("success_rate", _field(config, "success_rate", float, "config"), 0, 1, include_low=False)
        check_gamma(_field(config, "gamma", float, "config"))
    except ValueError as err:
        raise ValueError(f"config: {err}") from None
    maps = data.get("maps")
    if not isinstance(maps, list) or not maps:
        raise ValueError("maps is missing or empty")
    for i, entry in enumerate(maps):
        _check_map(entry, f"maps[{i}]")
