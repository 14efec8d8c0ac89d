"""Regenerate the README's tables of measured numbers from the results files of the commands printed beside them.

A generated table sits in README.md between ``<!-- table: NAME -->`` and ``<!-- /table -->``; :data:`TABLES` maps
NAME to the results file (committed under ``docs/results/``, each the ``results.json`` of the command named in
:data:`COMMANDS`) and the function that renders it. No number in those tables is typed by hand.

    python docs/make_readme_tables.py          # rewrite the tables in README.md
    python docs/make_readme_tables.py --check  # exit 1 if README.md is not what the results files give

To refresh a table, run its command and take its ``results.json`` in (only what the tables read is kept: the
configuration, and per row the per-seed values, summaries, paired statistics and flags — not the policies):

    python docs/make_readme_tables.py --take runs/compare/results.json paper.json

The Speed table is rendered from the benchmarks' ``--json`` files (schema ``iftgym.bench/1``, written by
``benchmarks/_results.py``; :data:`BENCHMARKS` names each one's command), taken in whole; a benchmark whose file is
absent has no rows, and the README says it was not run this round:

    python benchmarks/bench_env.py --json runs/bench-env.json
    python docs/make_readme_tables.py --take runs/bench-env.json bench-env.json

The estimators table is rendered from ``docs/results/estimators.json`` (schema ``iftgym.estimators/1``), which
``python docs/estimator_checks.py`` writes there itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import operator
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from iftgym.experiments.paired import paired_statistics
from iftgym.experiments.results import AlgorithmResult, CompareResult, load_results
from iftgym.explain.sweep import REPORT_SCHEMA as SWEEP_REPORT
from iftgym.explain.tables import update_rows
from iftgym.io import strict

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results"

# each results file and the command that wrote it (its --out's results.json, copied here); the README prints each
# command beside its tables (a test checks it)
COMMANDS = {
    "paper.json": "iftgym compare --out runs/compare",
    "ablation.json": "iftgym compare --algos 'sft,ift,ift(lam=0),ift(gamma=0),ift(lam=0,gamma=0),"
    'ift(detach_weights=true),ift(side="right")\' --out runs/ablation',
    "random-ift.json": "iftgym compare --random-maps 10 --size 6 --seeds 20 --algos 'sft,ift,ift(lam=0),ift(gamma=0)' "
    "--out runs/random-ift",
    "gru.json": 'iftgym compare --policy gru --algos "sft,ift,ift(lam=0),ift(gamma=0),ift(detach_weights=true)" '
    "--out runs/gru",
    "gru-early.json": 'iftgym compare --policy gru --steps 40 --algos "sft,ift,ift(lam=0),ift(gamma=0)" '
    "--out runs/gru-early",
    "gru-slippery.json": 'iftgym compare --policy gru --slippery --algos "sft,ift,ift(lam=0),ift(gamma=0)" '
    "--out runs/gru-slippery",
    "sweep-equal-budget.json": "iftgym sweep examples/sweeps/equal-budget.toml --out runs/sweep-equal-budget",
    "update-maps.json": "iftgym compare --update-maps --out runs/update-maps",
    "dft.json": "iftgym compare --algos sft,dft --out runs/dft",
    "dft-slippery.json": "iftgym compare --slippery --algos sft,dft --out runs/dft-slippery",
    "dft-random.json": "iftgym compare --random-maps 10 --size 6 --seeds 20 --algos sft,dft --out runs/dft-random",
    "prior.json": 'iftgym compare --algos \'sft,sft(transform="p"),sft(transform="p10"),dft,ift,'
    'sft+sft(transform="p"),sft+sft(transform="p10"),sft+dft,sft+ift\' --out runs/prior',
    "rl-mixed.json": "iftgym compare --algos 'sft,sft+grpo,chord,grpo,sft+ppo' --out runs/rl-mixed",
    "rl-mixed-tokens.json": "iftgym compare --budget tokens --algos 'sft,sft+grpo,chord,grpo,sft+ppo' "
    "--out runs/rl-mixed-tokens",
    "tokens-frozen-lake.json": "iftgym compare --world tokens --task frozen-lake --algos sft,ift --steps 500 "
    "--out runs/fl-text",
    "tokens-frozen-lake-controls-1.json": "iftgym compare --world tokens --task frozen-lake --algos "
    "'sft(embedding=\"frozen\"),ift(gamma=0)' --steps 500 --out runs/fl-text-controls-1",
    "tokens-frozen-lake-controls-2.json": "iftgym compare --world tokens --task frozen-lake --algos "
    "'ift(lam=0),ift(embedding=\"live\")' --steps 500 --out runs/fl-text-controls-2",
    "tokens-addition.json": "iftgym compare --world tokens --task addition --task-arg digits=2 --algos sft,ift "
    "--steps 1500 --out runs/addition",
    "tokens-addition-controls-1.json": "iftgym compare --world tokens --task addition --task-arg digits=2 --algos "
    "'sft(embedding=\"frozen\"),ift(gamma=0)' --steps 1500 --out runs/addition-controls-1",
    "tokens-addition-controls-2.json": "iftgym compare --world tokens --task addition --task-arg digits=2 --algos "
    "'ift(lam=0),ift(embedding=\"live\")' --steps 1500 --out runs/addition-controls-2",
    "estimators.json": "python docs/estimator_checks.py",
    "tokens-prior.json": 'iftgym lm --task addition --algo \'sft,dft,sft(transform="p10"),ift,sft+dft,'
    'sft+sft(transform="p10"),sft+ift\' --steps 400 --eval-every 100 --out runs/tokens-prior',
    "tokens-prior-1500.json": "iftgym lm --task addition --algo 'sft,sft+dft,sft+ift' --steps 1500 --eval-every 150 "
    "--out runs/tokens-prior-1500",
    "tokens-rl-mixed.json": "iftgym lm --task addition --budget tokens --algo 'sft,sft+grpo,chord' --steps 1500 "
    "--eval-every 150 --out runs/tokens-rl-mixed",
}

GRID_COLUMNS = [("mse", "MSE", 3), ("mse_demo", "MSE demo cells", 3), ("mse_rest", "MSE other cells", 3),
                ("optimal_mass", "mass on optimal", 3), ("success", "P(success)", 3), ("greedy_success", "greedy", 3),
                ("explored", "cells visited", 1)]  # fmt: skip
GRID_PAIRED = [("mse", "Δ MSE"), ("mse_rest", "Δ MSE other cells"), ("optimal_mass", "Δ mass on optimal"),
               ("success", "Δ P(success)")]  # fmt: skip
TOKEN_COLUMNS = [("target_test", "P(target) held-out", 3), ("greedy_test", "greedy held-out", 3),
                 ("sampled_test", "sampled held-out", 3), ("target_train", "P(target) train", 3)]  # fmt: skip
TOKEN_PAIRED = [("target_test", "Δ P(target) held-out"), ("greedy_test", "Δ greedy held-out"),
                ("sampled_test", "Δ sampled held-out")]  # fmt: skip


def interval(stats: dict[str, Any], digits: int) -> str:
    """``mean ± half-width``, or ``mean [low, high]`` where clipping made the interval lopsided (as the console)."""
    mean, low, high = stats["mean"], stats["ci95_low"], stats["ci95_high"]
    if low is None:
        return f"{mean:.{digits}f}"
    if np.isclose(mean - low, high - mean, rtol=0, atol=5 * 10 ** -(digits + 1)):
        return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def signed(stats: dict[str, Any]) -> str:
    """A paired difference: ``+0.0904 [+0.0726, +0.1081]*`` (``*``: Holm-adjusted p < 0.05)."""
    star = "*" if (stats.get("p_holm") if stats.get("p_holm") is not None else 1) < 0.05 else ""
    return f"{stats['mean']:+.4f} [{stats['ci95_low']:+.4f}, {stats['ci95_high']:+.4f}]{star}"


def bootstrap(stats: dict[str, Any], digits: int) -> str:
    return f"{stats['value']:.{digits}f} [{stats['ci95_low']:.{digits}f}, {stats['ci95_high']:.{digits}f}]"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def load(name: str | tuple[str, ...], baseline: str | None = None) -> CompareResult:
    """A results file; several (the same world and seeds, run in parts) are one comparison: their rows side by side,
    the first file's reference rows, and the paired statistics computed again over all rows (seed i of every run
    starts from the same network, so rows of different runs pair by seed as rows of one run do); ``baseline``
    pairs them with another row than the runs' own baseline."""
    if isinstance(name, str) and baseline is None:
        return load_results(RESULTS / name)
    name = (name,) if isinstance(name, str) else name
    parts = [load_results(RESULTS / part) for part in name if (RESULTS / part).is_file()]
    shared = set.intersection(*(set(part.config) for part in parts)) - {"algos", "baseline"}  # a setting added
    configs = [{k: part.config[k] for k in shared} for part in parts]  # after a run is absent from its file
    if any(config != configs[0] for config in configs):
        raise SystemExit(f"{', '.join(name)} are not runs of one comparison: their settings differ")
    first = parts[0].maps[0]
    entry = dataclasses.replace(first, algorithms={algo: run for part in parts
                                                   for algo, run in part.maps[0].algorithms.items()})  # fmt: skip
    paired_metrics = tuple(first.paired["rows"][parts[0].config["baseline"]])
    entry.paired = paired_statistics([entry], baseline or parts[0].config["baseline"], entry.lower_is_better(),
                                     paired_metrics)  # fmt: skip
    return dataclasses.replace(parts[0], maps=[entry])


def rows_table(name: str | tuple[str, ...], columns: list[tuple[str, str, int]]) -> str:
    """Every row of a comparison's first entry, mean ± 95% CI per metric; reference rows in italics."""
    entry = load(name).maps[0]
    rows = []
    for algo, run in entry.trained().items():
        flag = " (worse than untrained)" if run.worse_than_untrained else ""
        rows.append([algo + flag, *(interval(run.summary[key], digits) for key, _, digits in columns)])
    for ref, run in entry.references.items():
        rows.append([f"*{ref}*", *(interval(run.summary[key], digits) for key, _, digits in columns)])
    return markdown(["row", *(label for _, label, _ in columns)], rows)


def paired_table(
    name: str | tuple[str, ...], columns: list[tuple[str, str]], code: bool = False, extras: bool = True,
    baseline: str | None = None, rows_only: tuple[str, ...] | None = None, across: bool = False,
) -> str:  # fmt: skip
    """Every row (or ``rows_only``) against the baseline (the run's, or ``baseline``), paired by seed (``across``:
    by map, each map's mean over its seeds): the differences, Holm p, P(better) and (with ``extras``) the IQM of the
    first metric."""
    results = load(name, baseline)
    paired = results.paired_across_maps if across else results.maps[0].paired
    headline, label = columns[0][0], columns[0][1].removeprefix("Δ ")
    rows = []
    for row, metrics in paired["rows"].items():
        if row == paired["baseline"] or (code and row in ("uniform", "untrained", "demo-copy")):
            continue
        if rows_only is not None and row not in rows_only:
            continue
        first = metrics[headline]
        cells = [signed(metrics[key]["difference"]) for key, _ in columns]
        cells += [f"{first['difference']['p_holm']:.2g}", bootstrap(first["improvement"], 2)]
        cells += [bootstrap(first["iqm"], 4)] if extras else []
        rows.append([f"`{row}`" if code else row, *cells])
    header = [f"row − {paired['baseline']}", *(title for _, title in columns), f"Holm p ({label})",
              f"P(better {label})", *([f"IQM {label}"] if extras else [])]  # fmt: skip
    return markdown(header, rows)


def per_seed_table(name: str | tuple[str, ...], metric: str) -> str:
    """Each row's ``metric``, mean ± 95% CI, and its seeds' values (two decimals)."""
    entry = load(name).maps[0]
    rows = []
    for algo, run in entry.trained().items():
        values = ", ".join(f"{v:.2f}" for v in run.per_seed[metric])
        rows.append([f"`{algo}`", interval(run.summary[metric], 3), values])
    label = entry.metrics[metric].label if metric in entry.metrics else metric
    return markdown(["row", label, "per seed"], rows)


def contrasts(runs: list[tuple[str, str, str]], rows_shown: tuple[str, ...]) -> str:
    """Several runs side by side: per run (its label, results file and metric) each row's paired difference to the
    run's baseline on that metric, with its Holm p (a run over several maps: paired by map)."""
    rows = []
    for label, name, metric in runs:
        results = load(name)
        paired = results.paired_across_maps if len(results.maps) > 1 else results.maps[0].paired
        cells = []
        for row in rows_shown:
            difference = paired["rows"][row][metric]["difference"]
            cells.append(f"{signed(difference)}, Holm p {difference['p_holm']:.2g}")
        rows.append([label, *cells])
    return markdown(["run", *(f"`{row}` − `{paired['baseline']}`" for row in rows_shown)], rows)


def gru_table() -> str:
    """The GRU runs: each IFT row against SFT on the run's headline metric, paired by seed, with its Holm p."""
    runs = [
        ("paper map, 300 steps (`runs/gru`), P(success)", "gru.json", "success"),
        ("paper map, 40 steps (`runs/gru-early`), P(success)", "gru-early.json", "success"),
        ("slippery paper map (`runs/gru-slippery`), MSE along own visits", "gru-slippery.json", "mse_own_visits"),
    ]
    return contrasts(runs, ("ift", "ift(lam=0)", "ift(gamma=0)"))


def dft_table() -> str:
    """DFT against SFT on the paper map, on slippery ice and on random maps (paired by map)."""
    places = (
        ("paper map", "dft.json"),
        ("slippery paper map", "dft-slippery.json"),
        ("10 random 6x6 maps, by map", "dft-random.json"),
    )
    metrics = (("mse", "MSE"), ("mse_rest", "MSE other cells"), ("success", "P(success)"))
    runs = [(f"{where} (`runs/{name.removesuffix('.json')}`), {label}", name, metric)
            for where, name in places for metric, label in metrics]  # fmt: skip
    return contrasts(runs, ("dft",))


GRID_COMPUTE = [("success", "P(success)"), ("mse", "MSE")]
TOKEN_COMPUTE = [("greedy_test", "greedy held-out"), ("target_test", "P(target) held-out")]


def compute_table(name: str, metrics: list[tuple[str, str]] = GRID_COMPUTE) -> str:
    """A comparison at an equal budget: each row's steps and spend, its ``metrics`` (mean ± 95% CI), and its paired
    difference in the first of them to the baseline with Holm p."""
    entry = load(name).maps[0]
    paired = entry.paired
    first, label = metrics[0]
    rows = []
    for algo, run in entry.trained().items():
        compute = run.compute or {}
        difference = paired["rows"].get(algo, {}).get(first, {}).get("difference")
        versus = "" if difference is None else f"{signed(difference)}, Holm p {difference['p_holm']:.2g}"
        rows.append([f"`{algo}`", f"{compute.get('steps', 0):.0f}", f"{compute.get('tokens', 0):,.0f}",
                     *(interval(run.summary[key], 3) for key, _ in metrics), versus])  # fmt: skip
    return markdown(["row", "steps", "token passes", *(header for _, header in metrics),
                     f"Δ {label} − {paired['baseline']}"], rows)  # fmt: skip


def budget_table(name: str) -> str:
    """A sweep's equal-budget result (its ``report.json``): per algorithm the settings swept and the best and median
    of the metric over the same number of settings for every algorithm."""
    report = json.loads((RESULTS / name).read_text())
    if report.get("schema") != SWEEP_REPORT:
        raise SystemExit(f"{name} is not a sweep report (expected schema {SWEEP_REPORT})")
    metric = report["metric"].upper() if report["metric"] == "mse" else report["metric"]
    rows = [[algo, str(row["settings"]), f"{row['best']:.4f}", f"{row['median']:.4f}"]
            for algo, row in report["equal_budget"].items()]  # fmt: skip
    return markdown(["algorithm", "settings swept", f"best {metric}", f"median {metric}"], rows)


def update_maps_table(name: str) -> str:
    """A run with ``--update-maps``: per algorithm and training point, the change of the untrained cells' MSE that
    its next optimiser step makes and each part's signed share of it, the carried share and the cosine to the
    baseline (:func:`iftgym.explain.tables.update_rows`, what ``iftgym compare`` prints)."""
    numbers = update_rows(load(name).maps[0])
    if numbers is None:
        raise SystemExit(f"{name} holds no update fields: run its command, with --update-maps")
    header, rows = numbers
    return markdown(header, [[f"`{row[0]}`", *row[1:]] for row in rows])


def numbers_only(update: dict[str, Any] | None) -> dict[str, Any] | None:
    """An algorithm's update fields without what only their figure reads (the mean fields) or nothing does (the
    per-seed values)."""
    if not update or "points" not in update:
        return update
    points = [{**{key: value for key, value in point.items() if key != "field"},
               "mse": {key: value for key, value in point["mse"].items() if key != "per_seed"}}
              for point in update["points"]]  # fmt: skip
    return {**update, "points": points}


ESTIMATORS_SCHEMA = "iftgym.estimators/1"  # docs/estimator_checks.py's
# the group checks' rows: the check's key in estimators.json, its label, the numbers shown and an unbiased update's
GROUP_ROWS = [
    ("rloo", "RLOO: gain, relative error", ("gain", "relative_error"), "1, 0"),
    ("rloo_two_starts", "RLOO over both starts: gain, relative error", ("gain", "relative_error"), "1, 0"),
    ("grpo", 'GRPO (`scale_rewards="group"`): gain c, cosine', ("gain", "cosine"), "1, 1"),
    ("grpo_two_starts", "GRPO over both starts: gain, cosine", ("gain", "cosine"), "1, 1"),
    ("dr_grpo_scaling", 'GRPO, `scale_rewards="none"` (Dr. GRPO): gain', ("gain",), "1"),
    ("rloo_loss_grpo", 'RLOO advantage, `loss_type="grpo"` (mean per completion): cosine', ("cosine",), "1"),
    ("rloo_loss_dapo", 'RLOO advantage, `loss_type="dapo"` (over the batch tokens): cosine', ("cosine",), "1"),
    ("rloo_loss_dr_grpo", 'RLOO advantage, `loss_type="dr_grpo"` (over the longest): cosine', ("cosine",), "1"),
]


def group_cell(check: dict[str, float], shown: tuple[str, ...]) -> str:
    """The ``shown`` numbers of one group size's check: six decimals, a relative error in scientific notation."""
    return ", ".join(f"{check[key]:.1e}" if key == "relative_error" else f"{check[key]:.6f}" for key in shown)


def estimators_table() -> str:
    """The exact checks of the new rules' estimators (``docs/estimator_checks.py``): the group estimators' expected
    update against ``grad J`` per group size, then the importance weights' expectations per perturbation scale."""
    data = json.loads((RESULTS / "estimators.json").read_text())
    if data.get("schema") != ESTIMATORS_SCHEMA:
        raise SystemExit(f"estimators.json is not docs/estimator_checks.py's (expected schema {ESTIMATORS_SCHEMA})")
    sizes = list(data["groups"]["rloo"])
    groups = [[label, *(group_cell(data["groups"][key][G], shown) for G in sizes), unbiased]
              for key, label, shown, unbiased in GROUP_ROWS]  # fmt: skip
    weights = []
    for row in data["importance"]:
        mean, reward, cosine = row["mean"], row["reward"], row["cosine"]
        weights.append([f"{row['scale']:g} ({row['kl']:.4f})", f"{row['success_new']:.6f}",
                        *(f"{mean[name]:.6f}, {reward[name]:.6f}"
                          for name in ("sequence", "token_mean", "geometric", "iw_sft_token")),
                        f"{cosine['sequence']:.6f}, {cosine['token']:.6f}, {cosine['geometric']:.6f}"])  # fmt: skip
    return "\n\n".join([
        markdown(["expected update against grad J", *(f"G = {G}" for G in sizes), "unbiased"], groups),
        markdown(["scale (KL over episodes)", "J(pi)", "sequence w: E[w], E[w r]", "mean_t rho_t: E[w], E[w r]",
                  "geometric (GSPO, iw-SFT): E[w], E[w r]", "iw-SFT clip(rho_t, 0.2, 1.8): E[w], E[w r]",
                  "cosine to grad J(pi): sequence, token-level, GSPO"], weights),
    ])  # fmt: skip


BENCH_SCHEMA = "iftgym.bench/1"  # benchmarks/_results.py's
# the Speed table's benchmarks in its order: each results file and the command that wrote it
BENCHMARKS = {
    "bench-solvers.json": "python benchmarks/bench_solvers.py --json runs/bench-solvers.json",
    "bench-compare.json": "python benchmarks/bench_compare.py --json runs/bench-compare.json",
    "bench-env.json": "python benchmarks/bench_env.py --json runs/bench-env.json",
    "bench-seeds.json": "python benchmarks/bench_seeds.py --seeds 500 --steps 100 --batched-only "
    "--json runs/bench-seeds.json",
    "bench-hf.json": "python benchmarks/bench_hf.py --json runs/bench-hf.json",
    "bench-grpo.json": "python benchmarks/bench_grpo.py --json runs/bench-grpo.json",
    "bench-lm.json": "python benchmarks/bench_lm.py --threads 1 --json runs/bench-lm.json",
    "bench-token-seeds.json": "python benchmarks/bench_token_seeds.py --json runs/bench-token-seeds.json",
    "bench-sweep.json": "python benchmarks/bench_sweep.py --json runs/bench-sweep.json",
    "bench-retrain.json": "python benchmarks/bench_retrain.py --json runs/bench-retrain.json",
    "bench-update-maps.json": "python benchmarks/bench_update_maps.py --json runs/bench-update-maps.json",
}
COMMANDS.update(BENCHMARKS)
OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}


def read_benchmark(name: str, path: str | Path | None = None) -> dict[str, Any]:
    """The benchmark file ``name`` (read from ``path``, default ``docs/results/name``), checked: its schema, and the
    command :data:`BENCHMARKS` names for it."""
    path = RESULTS / name if path is None else Path(path)
    data = json.loads(path.read_text())
    if data.get("schema") != BENCH_SCHEMA:
        raise SystemExit(f"{path} is not a benchmark's file (expected schema {BENCH_SCHEMA})")
    if without_json(data["command"]) != without_json(BENCHMARKS[name]):
        raise SystemExit(f"{path} was written by `{data['command']}`, not `{BENCHMARKS[name]}`: run that")
    return data


def without_json(command: str) -> list[str]:
    """A command's words without its ``--json PATH`` (where the file went does not change what it holds)."""
    words = shlex.split(command)
    if "--json" in words:
        del words[words.index("--json") : words.index("--json") + 2]
    return words


def quantity(value: float | bool | None, unit: str) -> str:
    """A measured number as the Speed table prints it: ``473x``, ``1.93x``, ``0.27 s``, ``1.4e-11``, ``yes``."""
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return "yes" if value else "no"
    size = abs(value)
    if unit == "" and 0 < size < 1e-3:
        return f"{value:.1e}"
    digits = ",.0f" if size >= 100 else ".1f" if size >= 10 else ".2f" if size >= 0.1 or value == 0 else ".3f"
    return f"{value:{digits}}x" if unit == "x" else f"{value:{digits}} {unit}".rstrip()


def measured(data: dict[str, Any], target: dict[str, Any]) -> str:
    """The numbers of a target, each with its label, ``**missed**`` after each that misses its target."""
    numbers = [data["numbers"][key] for key in target["numbers"]]
    note = f" ({target['note']})" if target.get("note") else ""
    if all(number["value"] is None for number in numbers):
        return "**not measured**" + note
    parts = []
    for number in numbers:
        target, value = number.get("target"), number["value"]
        missed = target is not None and value is not None and not OPS[target["op"]](value, target["value"])
        parts.append(f"{number['label']} {quantity(value, number['unit'])}" + (" **missed**" if missed else ""))
    return "; ".join(parts) + note


def speed_table() -> str:
    """One row per target of every benchmark whose file is in ``docs/results/`` (target, the numbers measured, the
    command), where and when they ran, and the commands of the benchmarks not run this round."""
    rows, machines, missing = [], {}, []
    for name, command in BENCHMARKS.items():
        if not (RESULTS / name).is_file():
            missing.append(command)
            continue
        data = read_benchmark(name)
        rows += [[target["target"], measured(data, target), f"`{command}`"] for target in data["targets"]]
        m = data["machine"]
        where = f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}"
        where += f", CUDA: {m['cuda']}" if m.get("cuda") else ""
        machines.setdefault(where, []).append(f"`{data['benchmark']}` {data['date'][:10]}")
    parts = [markdown(["target", "measured", "command"], rows)] if rows else []
    parts += [f"Measured on {where}: {', '.join(runs)}." for where, runs in machines.items()]
    if missing:
        parts.append("Not run this round (no rows above):\n\n" + "\n".join(f"- `{c}`" for c in missing))
    return "\n\n".join(parts) if parts else "No benchmark was run this round."


# the token world's addition runs: SFT and IFT, then the controls, run in parts as one comparison
ADDITION = ("tokens-addition.json", "tokens-addition-controls-1.json", "tokens-addition-controls-2.json")
FROZEN_LAKE_TEXT = ("tokens-frozen-lake.json", "tokens-frozen-lake-controls-1.json",
                    "tokens-frozen-lake-controls-2.json")  # fmt: skip
TABLES: dict[str, Callable[[], str]] = {
    "paper": lambda: rows_table("paper.json", GRID_COLUMNS),
    "paper-paired": lambda: paired_table("paper.json", GRID_PAIRED),
    "ablation": lambda: paired_table("ablation.json", GRID_PAIRED, code=True, extras=False),
    "random-ift": lambda: paired_table("random-ift.json", GRID_PAIRED, code=True, extras=False, across=True),
    "gru": gru_table,
    "dft": dft_table,
    "prior": lambda: paired_table("prior.json", GRID_PAIRED, code=True, extras=False),
    "rl-mixed": lambda: paired_table("rl-mixed.json", GRID_PAIRED, code=True, extras=False),
    "rl-mixed-tokens": lambda: compute_table("rl-mixed-tokens.json"),
    "rl-mixed-vs-sft-grpo": lambda: paired_table(
        "rl-mixed.json",
        GRID_PAIRED,
        code=True,
        extras=False,
        baseline="sft+grpo",
        rows_only=("chord", "grpo", "sft+ppo"),
    ),
    "sweep-equal-budget": lambda: budget_table("sweep-equal-budget.json"),
    "update-maps": lambda: update_maps_table("update-maps.json"),
    "speed": speed_table,
    "estimators": estimators_table,
    "tokens-frozen-lake": lambda: rows_table(FROZEN_LAKE_TEXT, TOKEN_COLUMNS),
    "tokens-frozen-lake-paired": lambda: paired_table(FROZEN_LAKE_TEXT, TOKEN_PAIRED, code=True),
    "tokens-prior": lambda: paired_table("tokens-prior.json", TOKEN_PAIRED, code=True, extras=False),
    "tokens-prior-1500": lambda: rows_table("tokens-prior-1500.json", TOKEN_COLUMNS),
    "tokens-prior-1500-paired": lambda: paired_table("tokens-prior-1500.json", TOKEN_PAIRED, code=True, extras=False),
    "tokens-rl-mixed": lambda: compute_table("tokens-rl-mixed.json", TOKEN_COMPUTE),
    "tokens-rl-mixed-vs-sft-grpo": lambda: paired_table(
        "tokens-rl-mixed.json", TOKEN_PAIRED, code=True, extras=False, baseline="sft+grpo", rows_only=("chord",)
    ),
    "tokens-addition": lambda: rows_table(ADDITION, TOKEN_COLUMNS),
    "tokens-addition-paired": lambda: paired_table(ADDITION, TOKEN_PAIRED, code=True),
    "tokens-addition-seeds": lambda: per_seed_table(ADDITION, "greedy_test"),
    # IFT and its parts against SFT reading the same frozen copy of the embedding: what IFT adds to that
    "tokens-addition-frozen": lambda: paired_table(
        ADDITION,
        TOKEN_PAIRED,
        code=True,
        extras=False,
        baseline='sft(embedding="frozen")',
        rows_only=("ift", "ift(lam=0)", "ift(gamma=0)"),
    ),
}
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>(?:(?!<!-- table:).)*?)\n?(<!-- /table -->)", re.S)


def render(text: str) -> str:
    """``text`` with every generated table replaced by what its results file gives."""

    def table(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise SystemExit(f"README.md names table {name!r}, which {Path(__file__).name} does not know")
        return match.group(1) + TABLES[name]() + "\n" + match.group(4)

    return BLOCK.sub(table, text)


def take(source: str, name: str) -> None:
    """Keep what the tables read of the results file ``source`` as ``docs/results/name``: a results file of its own
    (it reads back with :func:`load_results`) without the policy matrices, curves, histories, strips and the update
    fields' arrays (their numbers are kept)."""
    if json.loads(Path(source).read_text()).get("schema") == SWEEP_REPORT:  # a sweep's report: kept whole
        (RESULTS / name).write_text(Path(source).read_text())
        return
    if name in BENCHMARKS:  # a benchmark's --json file: checked, then kept whole
        read_benchmark(name, source)
        (RESULTS / name).write_text(Path(source).read_text())
        return
    results = load_results(source)
    for entry in results.maps:
        if len(results.maps) > 1:  # a comparison across maps: the tables read its statistics paired by map
            entry.paired = None
        entry.algorithms = {algo: dataclasses.replace(run, policies=None, curves={}, history={}, strips=None,
                                                      update=numbers_only(run.update))
                            if isinstance(run, AlgorithmResult) else run
                            for algo, run in entry.algorithms.items()}  # fmt: skip
    (RESULTS / name).write_text(json.dumps(strict(results.to_json()), separators=(",", ":")) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md differs from what it should be")
    parser.add_argument("--take", nargs=2, metavar=("RESULTS_JSON", "NAME"),
                        help="keep what the tables read of a run's results.json as docs/results/NAME")  # fmt: skip
    args = parser.parse_args()
    if args.take:
        take(*args.take)
        return 0
    text = README.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md's tables differ from docs/results: run python docs/make_readme_tables.py",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
