"""Console tables (rich) of what experiments return: comparisons, tiny-LM runs, estimator bias, maps.

Each function builds a :class:`rich.table.Table` or :class:`rich.text.Text` from data and prints nothing, so the
command line, notebooks and tests render the same objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from iftgym.experiments.bias import BiasResult
from iftgym.experiments.results import CompareResult, Skipped, WorldResult
from iftgym.worlds.frozen_lake.maps import catalogue, catalogue_description
from iftgym.worlds.frozen_lake.model import ACTION_ARROWS, ACTION_NAMES, FrozenLakeMDP

TILE_STYLES = {"S": "bold blue", "F": "white", "H": "bold white on grey23", "G": "bold green"}


def draw_map(model: FrozenLakeMDP, values: np.ndarray | None = None, policy: np.ndarray | None = None) -> Text:
    """The map as rich text; with ``values`` and ``policy``, each cell shows its value and greedy arrows."""
    text = Text()
    vmax = float(values.max()) if values is not None and values.max() > 0 else 1.0
    for row in range(model.nrow):
        for col in range(model.ncol):
            s = row * model.ncol + col
            tile = model.tile(s)
            if values is None:
                text.append(f"{tile} ", style=TILE_STYLES[tile])
                continue
            if tile in "HG":
                text.append(f" {tile:^6}", style=TILE_STYLES[tile])
                continue
            best = policy[s] >= policy[s].max() - 1e-9
            arrows = "".join(a for a, b in zip(ACTION_ARROWS, best) if b)
            shade = int(40 + 200 * values[s] / vmax)
            text.append(
                f"{arrows:<2}{values[s]:.2f}"[:6].rjust(7), style=f"black on rgb({255 - shade},255,{255 - shade})"
            )
        text.append("\n")
    return text


def catalogue_table() -> Table:
    """The map catalogue, each map drawn with its route lengths and description."""
    table = Table(title="Frozen Lake map catalogue", show_lines=True)
    for column in ("name", "size", "map", "optimal / second route", "about"):
        table.add_column(column)
    for name, desc in catalogue().items():
        model = FrozenLakeMDP.from_map(desc)
        second = model.suboptimal_route()
        routes = f"{len(model.optimal_route()) - 1} / {len(second) - 1 if second else '-'} moves"
        table.add_row(name, f"{model.nrow}x{model.ncol}", draw_map(model), routes, catalogue_description(name))
    return table


def format_interval(stats: dict[str, float | None], digits: int = 3, brackets: bool = False) -> str:
    """``mean ± half-width``, or ``mean [low, high]`` when ``brackets`` or where clipping to the metric's range made
    the interval lopsided; a single seed has no interval and says so (``(no CI)``)."""
    mean, low, high = stats["mean"], stats["ci95_low"], stats["ci95_high"]
    if low is None or high is None:
        return f"{mean:.{digits}f} (no CI)"
    if not brackets and np.isclose(mean - low, high - mean, rtol=0, atol=5 * 10 ** -(digits + 1)):
        return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


GRID_COLUMNS = ("mse", "mse_demo", "mse_rest", "optimal_mass", "success", "greedy_success", "explored", "bias")


def compare_table(entry: WorldResult) -> Table:
    """One map's or world's results: mean ± 95% CI half-width over seeds per algorithm, the best of each column in
    green, the reference rows (uniform, untrained, demo-copy) below, and any algorithm whose headline metric is
    significantly worse than the untrained network's flagged. A Frozen Lake map shows :data:`GRID_COLUMNS`, any
    other world every metric it measured."""
    scored = entry.trained()
    names = GRID_COLUMNS if entry.grid is not None else tuple(entry.metrics)
    columns = [(key, entry.metrics[key].label) for key in names if key in entry.metrics]
    lower = entry.lower_is_better()
    if entry.grid is not None:
        success = entry.grid.optimal_success
        title = (f"{escape(entry.name)}: mean ± 95% CI over seeds (optimal P(success) = {success:.3f}; MSE split "
                 "into the demonstrated cells and the others)")  # fmt: skip
    else:
        seeds = next(iter(entry.references.values())).seeds if entry.references else 0
        title = (f"{escape(entry.name)}: mean ± 95% CI over {seeds} seeds" if seeds > 1 else
                 f"{escape(entry.name)}: (1 seed, no CI)")  # fmt: skip
    table = Table(title=title)
    table.add_column("algorithm")
    for _, label in columns:
        table.add_column(escape(label), justify="right")
    budget = next((kind for r in scored.values() if (kind := (r.compute or {}).get("budget", "steps")) != "steps"),
                  None)  # an equal budget of token passes or seconds: what each algorithm took and spent  # fmt: skip
    spent_columns = ["steps", "token passes" if budget == "tokens" else "train s"] if budget else []
    for label in spent_columns:
        table.add_column(label, justify="right")
    table.add_column("wall s", justify="right")
    best = {}
    for key, _ in columns:
        means = [m for r in scored.values() if (m := _mean(r.summary.get(key))) is not None]
        if means:
            best[key] = (min if lower[key] else max)(means)
    for algo, result in entry.algorithms.items():
        if isinstance(result, Skipped):
            dashes = ["-"] * (len(columns) + len(spent_columns))
            table.add_row(escape(algo), *dashes, f"skipped: {escape(result.skipped)}")
            continue
        cells = []
        for key, _ in columns:
            mean = _mean(stats := result.summary.get(key))
            text = "-" if mean is None else format_interval(stats)
            cells.append(f"[bold green]{text}[/]" if mean is not None and np.isclose(mean, best[key]) else text)
        flag = " [red](worse than untrained)[/]" if result.worse_than_untrained else ""
        cells += _spent(result.compute or {}, budget) if budget else []
        table.add_row(escape(algo) + flag, *cells, f"{result.wall_time:.1f}")
    for row, result in entry.references.items():
        cells = ["-" if _mean(s := result.summary.get(key)) is None else format_interval(s)
                 for key, _ in columns]  # fmt: skip
        cells += [""] * len(spent_columns)
        table.add_row(f"[dim italic]{escape(row)}[/]", *(f"[dim]{c}[/]" for c in cells), "[dim]reference[/]")
    return table


def _spent(compute: dict[str, Any], budget: str) -> list[str]:
    """An algorithm's steps (``capped``: it reached its step cap before its budget) and its token passes or seconds."""
    steps = f"{compute.get('steps', 0):.0f}" + (" (capped)" if compute.get("capped") else "")
    return [steps, f"{compute.get('tokens', 0):,.0f}" if budget == "tokens" else f"{compute.get('seconds', 0):.2f}"]


def _mean(stats: dict[str, Any] | None) -> float | None:
    """A summary's mean, or ``None`` where the metric was not measured (NaN in memory, ``null`` in a file)."""
    mean = None if stats is None else stats["mean"]
    return None if mean is None or np.isnan(mean) else float(mean)


def paired_table(paired: dict[str, Any], title: str, metrics: Sequence[str] | None = None) -> Table:
    """Each row against the baseline: the paired difference of each metric, mean [95% CI], starred where its
    Holm-adjusted p-value is below 0.05, then for the first metric its p, the probability of improvement and the
    interquartile mean, each with its stratified-bootstrap interval. The metrics are the first four of MSE, MSE on
    other cells, mass on optimal, success and the two measured along the rows' own visits (all a policy with memory
    has besides success) that some row was compared on; in another world, the first four of its ``metrics``
    (names)."""
    candidates = tuple(metrics or ("mse", "mse_rest", "optimal_mass", "success", "mse_own_visits",
                                   "optimal_mass_own_visits"))  # fmt: skip
    metrics = [m for m in candidates
               if any("difference" in row.get(m, {}) for row in paired["rows"].values())][:4]  # fmt: skip
    headline = metrics[0] if metrics else "mse"
    units = f"{paired['maps']} of {paired['maps_total']} maps" if paired["units"] == "maps" else "seeds"
    baseline = escape(paired["baseline"])
    table = Table(title=f"{escape(title)}: difference to {baseline}, paired by {units}; * Holm-adjusted p < 0.05")
    table.add_column("row")
    for metric in metrics:
        table.add_column(f"Δ {metric}", justify="right")
    for label in (f"Holm p ({headline})", f"P(better {headline})", f"IQM {headline}"):
        table.add_column(label, justify="right")
    for name, row in paired["rows"].items():
        if name == paired["baseline"]:
            continue
        cells = []
        for metric in metrics:
            difference = row.get(metric, {}).get("difference")
            p = None if difference is None else difference.get("p_holm")
            star = "*" if p is not None and p < 0.05 else ""
            cells.append("-" if difference is None else format_interval(difference, 4, brackets=True) + star)
        first = row.get(headline, {})
        p = first.get("difference", {}).get("p_holm")
        cells.append("-" if p is None else f"{p:.2g}")
        cells.append("-" if "improvement" not in first else _bootstrap(first["improvement"], 2))
        cells.append("-" if "iqm" not in first else _bootstrap(first["iqm"], 4))
        table.add_row(escape(name), *cells)
    return table


def _bootstrap(stats: dict[str, float], digits: int) -> str:
    return f"{stats['value']:.{digits}f} [{stats['ci95_low']:.{digits}f}, {stats['ci95_high']:.{digits}f}]"


def across_maps_table(results: CompareResult) -> Table:
    """A sweep over maps: per-map means, then mean and 95% CI over maps, with how often each algorithm won."""
    summary = results.across_maps or {}
    used, total = summary.get("maps", len(results.maps)), summary.get("maps_total", len(results.maps))
    table = Table(title=f"across the {used} of {total} maps where every algorithm ran: per-map means, then mean "
                  "[95% CI] over maps (wins)")  # fmt: skip
    table.add_column("algorithm")
    for metric in ("mse", "success", "explored"):
        table.add_column(metric, justify="right")
    for algo in results.config["algos"]:
        cells = []
        for metric in ("mse", "success", "explored"):
            stats = summary[metric].get(algo)
            cells.append("-" if stats is None else f"{format_interval(stats, 4, brackets=True)} ({stats['wins']} wins)")
        table.add_row(escape(algo), *cells)
    return table


def _percent(value: float | None) -> str:
    """A signed share (``+17%``, ``-4%``; ``0%`` where it rounds to nothing); ``-`` where there is none."""
    if value is None:
        return "-"
    return "0%" if round(100 * value) == 0 else f"{100 * value:+.0f}%"


def update_rows(entry: WorldResult, baseline: str | None = None) -> tuple[list[str], list[list[str]]] | None:
    """The numbers of a map's update fields (``iftgym compare --update-maps``) as plain text, a row per algorithm and
    training point (a recipe's point names the stage's rule where it differs):

    * ``Δ MSE other cells`` and ``measured``: the first-order change one optimiser step makes to the MSE on the
      untrained cells (the non-terminal cells no demonstration acts in), mean over seeds, and the change measured;
    * a column per demonstrated cell ``(row,col)``, then ``other cells`` (the terms of cells no demonstration acts in:
      DPO's rejected route, PPO's episodes) and ``momentum`` (what Adam's earlier steps add): each part's signed share
      of the gross change, ``part / Σ|parts|`` (the sizes of the parts sum to 100%; negative: the part lowers the
      MSE, positive: it raises it), so that parts that nearly cancel read as they are; "-" where the step changes
      nothing;
    * ``carried``: the share of the field's change over all non-terminal cells (``Σ|Δ log π|``) carried from other
      cells' loss terms rather than the cell's own (what the update map's title says);
    * the cosine between the field and ``baseline``'s (default the run's) at that point on the untrained cells, mean
      over seeds (at step 0 every rule starts from the same network, later each from its own).

    ``None`` when no algorithm kept an update field. The header and rows are what :func:`update_table` and the
    README's generated table show."""
    runs = {algo: run.update for algo, run in entry.trained().items()
            if run.update is not None and "points" in run.update}  # fmt: skip
    if not runs or entry.grid is None:
        return None
    baseline = baseline or (entry.paired or {}).get("baseline") or next(iter(runs))
    ncol = len(entry.grid.rows[0])
    demonstrated = list(entry.grid.demonstrated)
    cosines = {point["step"]: point["pairs"] for point in (entry.update or {}).get("alignment", [])}
    header = ["algorithm", "step", "Δ MSE other cells", "measured",
              *(f"({c // ncol},{c % ncol})" for c in demonstrated), "other cells", "momentum", "carried",
              f"cos to {baseline}"]  # fmt: skip
    rows = []
    for algo, update in runs.items():
        for point in update["points"]:
            mse, step = point["mse"], point["step"]
            parts = {int(cell): value for cell, value in mse["by_source"].items()}
            others = sum(value for cell, value in parts.items() if cell not in demonstrated)
            gross = sum(abs(value) for value in parts.values()) + abs(mse["rest"])
            shares = [parts.get(c, 0.0) for c in demonstrated] + [others, mse["rest"]]
            own = point["own_fraction"]
            pairs = cosines.get(step, {})
            cosine = (pairs.get(f"{baseline} | {algo}") or pairs.get(f"{algo} | {baseline}") or {}).get("untrained")
            rows.append([
                algo, f"{step}" if point["rule"] == algo else f"{step} ({point['rule']})",
                f"{mse['mse_rest_change']:+.2e}", f"{mse['mse_rest_change_measured']:+.2e}",
                *(_percent(share / gross if gross > 0 else None) for share in shares),
                "-" if own is None else f"{100 * (1 - own):.0f}%",
                "-" if algo == baseline or cosine is None else f"{cosine:+.2f}",
            ])  # fmt: skip
    return header, rows


def update_table(entry: WorldResult, baseline: str | None = None) -> Table | None:
    """A map's update fields over training (:func:`update_rows`) as a table; ``None`` without any."""
    numbers = update_rows(entry, baseline)
    if numbers is None:
        return None
    header, rows = numbers
    table = Table(title=f"{escape(entry.name)}: each algorithm's next optimiser step at the start, middle and end of "
                  "training — the change of the MSE on the cells no demonstration acts in (first order and measured, "
                  "mean over seeds) and each part's signed share of it: from each demonstrated cell (row,col), from "
                  "other cells, from Adam's momentum (negative: lowers the MSE)",
                  caption="carried: the share of the step's change of log π over all cells carried from other cells' "
                  "loss terms; cos: the cosine to the baseline's step on the untrained cells")  # fmt: skip
    for i, column in enumerate(header):
        table.add_column(escape(column), justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def comparison_tables(results: CompareResult) -> list[Table]:
    """Every table of a comparison: per map or world its results, its paired statistics and (``--update-maps``) its
    update fields, then (over several maps) the summary across maps and the statistics paired by map."""
    tables = []
    for entry in results.maps:
        tables.append(compare_table(entry))
        if entry.paired is not None:
            tables.append(paired_table(entry.paired, entry.name, None if entry.grid else list(entry.metrics)))
        update = update_table(entry)
        if update is not None:
            tables.append(update)
    if results.across_maps is not None:
        tables.append(across_maps_table(results))
        if results.paired_across_maps is not None:
            tables.append(paired_table(results.paired_across_maps, "across maps"))
    return tables


def generation_heading(results: dict[str, Any]) -> str:
    """``iftgym generate``'s first line: the model folder and how it decoded."""
    config = results["config"]
    if not config["sample"]:
        return f"{config['model']}: greedy"
    limits = [f"top-k {config['top_k']}"] if config["top_k"] is not None else []
    limits += [f"top-p {config['top_p']:g}"] if config["top_p"] != 1 else []
    return f"{config['model']}: " + ", ".join([f"sampled at temperature {config['temperature']:g}", *limits])


def generation_table(results: dict[str, Any]) -> Table:
    """``iftgym generate``: every seed's answer to every prompt (an unfinished one, cut at the token limit, marked
    with an ellipsis)."""
    table = Table()
    for column in ("prompt", "seed", "answer"):
        table.add_column(column)
    for prompt, answers, finished in zip(results["prompts"], results["answers"], results["finished"]):
        for k, (seed, answer, done) in enumerate(zip(results["seeds"], answers, finished)):
            table.add_row(escape(prompt) if k == 0 else "", str(seed), escape(answer) + ("" if done else " …"))
    return table


def bias_table(result: BiasResult, title: str) -> Table:
    """Every estimator along the optimal demonstration, step by step (``iftgym bias``)."""
    est, world = result.estimates, result.world
    caption = (
        "log-bias = log teacher-forced - log exact on-policy; on a deterministic map it equals the sum of the "
        "prefix losses (the identity)"
        if est.reach == "path"
        else "exact on-policy = P(rollout in this cell at this step) x pi: on slippery ice the log-bias is the "
        "-log of that state probability"
    )
    table = Table(title=title, caption=caption)
    for column in ("step", "state", "action", "teacher-forced", f"IFT (λ={est.lam:g})", "exact on-policy",
                   "log-bias", "Σ prefix losses"):  # fmt: skip
        table.add_column(column, justify="right")
    log_bias = est.sft_bias.log[0]
    for n, (state, action) in enumerate(zip(result.demo.states, result.demo.actions)):
        row, col = divmod(int(state), world.ncol)
        table.add_row(
            str(n), f"({row},{col}) {world.tile(int(state))}", f"{ACTION_ARROWS[action]} {ACTION_NAMES[action]}",
            f"{est.teacher_forced[0, n]:.4f}", f"{est.ift[0, n]:.4f}", f"{est.exact[0, n]:.4g}",
            f"{log_bias[n]:.4f}", f"{est.prefix_loss[0, n]:.4f}",
        )  # fmt: skip
    return table
