"""The typed results of a comparison in any world, and their versioned JSON form (``results.json``).

One :class:`CompareResult` per run: its world, configuration and one :class:`WorldResult` per map (Frozen Lake) or
per world (every other world), each holding its algorithms (:class:`AlgorithmResult`, or :class:`Skipped` with the
reason), its reference rows (:class:`Row`), the metrics it measured (:class:`Metric`) and the paired statistics
against the baseline. Every row keeps its values per seed beside their summaries, and every trained algorithm keeps
its training history (the mean over seeds of each logged metric per step, a registered rule's own metrics
included), its evaluation curves and its stages; a run with ``--update-maps`` keeps its algorithms' next steps at
three training points: on a map their update fields and the cosines between them, in the token world their update
strips (optional fields, absent from older files).

:meth:`CompareResult.to_json` writes :data:`SCHEMA`; :meth:`CompareResult.from_json` reads it and the previous
version (``iftgym.compare/1``: the same layout without the grid's ``metrics`` and ``history``), checking every field
that tables and figures read, so a damaged or crafted file is one ``ValueError`` naming its first bad field rather
than a failure half-way through drawing. Files are JSON only: nothing is ever unpickled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from iftgym.io import read_json
from iftgym.validate import between
from iftgym.version import __version__
from iftgym.worlds.frozen_lake.maps import validate_map
from iftgym.worlds.frozen_lake.model import check_gamma

SCHEMA = "iftgym.compare/2"
READABLE = ("iftgym.compare/1", SCHEMA)
GRID = "frozen-lake"
INFO = ("task", "world")  # what a world's entry may say of itself


class Summary(TypedDict):
    """A metric over seeds: its mean and 95% interval (``None`` ends for a single seed; all ``None``: not
    measured)."""

    mean: float | None
    ci95_low: float | None
    ci95_high: float | None


@dataclass
class Metric:
    """What a world measures: a metric's label in tables and figures, and its direction."""

    label: str
    lower_is_better: bool


# what a Frozen Lake comparison measures (exactly, by dynamic programming; iftgym.experiments.compare)
GRID_METRICS = {
    "mse": Metric("MSE to optimal", True),
    "success": Metric("P(success)", False),
    "greedy_success": Metric("P(success) greedy", False),
    "explored": Metric("cells visited", False),
    "bias": Metric("SFT log-bias", True),
    "mse_demo": Metric("MSE demo cells", True),
    "mse_rest": Metric("MSE other cells", True),
    "mse_optimal_visits": Metric("MSE, optimal visits", True),
    "mse_own_visits": Metric("MSE, own visits", True),
    "optimal_mass": Metric("mass on optimal", False),
    "optimal_mass_own_visits": Metric("mass on optimal, own visits", False),
}


@dataclass
class Row:
    """A scored row of a comparison (an algorithm or a reference policy): each metric per seed and summarised."""

    per_seed: dict[str, list[float]]
    summary: dict[str, Summary | None]

    @property
    def seeds(self) -> int:
        """How many seeds the row was scored on."""
        return len(next(iter(self.per_seed.values()), []))


@dataclass
class AlgorithmResult(Row):
    """A trained algorithm: its scores (:class:`Row`), wall time, stages (rule, config, steps, learning rate),
    evaluation curves (``{"steps": [...], metric: (K, n)}``), training history (each logged metric's mean over
    seeds per step), its policy matrices ``(K, S, A)`` where the world has them (Frozen Lake, a Markov policy), its
    preference strips (tokens), whether it ended significantly worse than the untrained network, and with
    ``--update-maps`` its next steps over training (``update``: ``{"points": [...], "seconds": s}`` or
    ``{"skipped": reason}``, with the seconds spent before it stopped where any were; see
    :class:`iftgym.metrics.update.UpdateRecorder` for a map's update fields and
    :class:`iftgym.metrics.update_tokens.TokenUpdateRecorder` for the token world's strips), and the compute it spent
    (``compute``: ``{"steps", "tokens", "seconds", "capped", "budget", "amount"}``: optimiser steps, token passes per
    seed, seconds of training steps, whether a budget hit its step cap, the budget and its amount; ``--budget``)."""

    wall_time: float = 0.0
    stages: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    policies: list | None = None
    strips: list[dict[str, Any]] | None = None
    worse_than_untrained: bool | None = None
    update: dict[str, Any] | None = None
    compute: dict[str, Any] | None = None


@dataclass
class Skipped:
    """An algorithm the world could not train, and why (a pair rule on a map without a second route)."""

    skipped: str


@dataclass
class Grid:
    """What a Frozen Lake map adds: its rows, the optimal policy ``(S, A)``, its values and success probability,
    and the demonstrated cells."""

    rows: list[str]
    optimal_policy: list
    optimal_values: list[float]
    optimal_success: float
    demonstrated: list[int] = field(default_factory=list)


@dataclass
class WorldResult:
    """One map, or one world: every algorithm, the reference rows, the metrics measured, the paired statistics
    against the baseline (``None`` when there is nothing to pair) and, on a map run with ``--update-maps``, the
    cosines between the algorithms' update fields at each training point (``update``)."""

    name: str
    algorithms: dict[str, AlgorithmResult | Skipped]
    references: dict[str, Row] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    paired: dict[str, Any] | None = None
    grid: Grid | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what the world says of itself: {"task": ...}, {"world": ...}
    update: dict[str, Any] | None = None  # --update-maps: {"alignment": [{"step", "pairs"}]}, the cosines of the rules

    def trained(self) -> dict[str, AlgorithmResult]:
        """The algorithms that trained (not skipped)."""
        return {name: run for name, run in self.algorithms.items() if isinstance(run, AlgorithmResult)}

    def scored_rows(self) -> dict[str, Row]:
        """Every row with per-seed scores: the trained algorithms, then the reference rows."""
        return {**self.trained(), **self.references}

    def lower_is_better(self) -> dict[str, bool]:
        """Each metric's direction."""
        return {name: metric.lower_is_better for name, metric in self.metrics.items()}


@dataclass
class CompareResult:
    """A whole comparison: its world, configuration (``CompareConfig`` as a dict), one :class:`WorldResult` per map
    or world, and over several maps the per-map summary and the statistics paired by map."""

    world: str
    config: dict[str, Any]
    maps: list[WorldResult]
    version: str = __version__
    across_maps: dict[str, Any] | None = None
    paired_across_maps: dict[str, Any] | None = None
    device: str = "cpu"
    processes: int = 1
    wall_time: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form (:data:`SCHEMA`)."""
        data: dict[str, Any] = {"schema": SCHEMA, "version": self.version, "world": self.world, "config": self.config,
                                "maps": [_world_json(entry) for entry in self.maps], "device": self.device,
                                "processes": self.processes}  # fmt: skip
        if self.wall_time is not None:
            data["wall_time"] = self.wall_time
        if len(self.maps) > 1:
            data["across_maps"], data["paired_across_maps"] = self.across_maps, self.paired_across_maps
        return data

    @classmethod
    def from_json(cls, data: Any) -> CompareResult:
        """Read the JSON form (this version or ``iftgym.compare/1``), checking every field tables and figures read;
        a ``ValueError`` names the first bad one."""
        if not isinstance(data, dict) or data.get("schema") not in READABLE:
            raise ValueError(f"not an iftgym compare result (expected schema {' or '.join(READABLE)})")
        config = data.get("config")
        if not isinstance(config, dict):
            raise ValueError("config is not an object")
        world = data.get("world", GRID)  # version 1 wrote it only for worlds other than Frozen Lake
        if not isinstance(world, str):
            raise ValueError(f"world is {_kind_of(world)}: expected a string")
        if world == GRID:
            _check_grid_config(config)
        maps = data.get("maps")
        if not isinstance(maps, list) or not maps:
            raise ValueError("maps is missing or empty")
        entries = [_world_result(entry, f"maps[{i}]", world == GRID) for i, entry in enumerate(maps)]
        return cls(
            world, config, entries, str(data.get("version", "")), _optional(data, "across_maps"),
            _optional(data, "paired_across_maps"), str(data.get("device", "cpu")), int(data.get("processes", 1)),
            data.get("wall_time") if _is(data.get("wall_time"), float) else None,
        )  # fmt: skip


def load_results(path: str | os.PathLike) -> CompareResult:
    """Read and check a ``results.json`` written by ``iftgym compare`` (any world; see :meth:`CompareResult.from_json`);
    a damaged file is one ``ValueError`` naming the file and the first bad field."""
    data = read_json(path, "results file")
    if not isinstance(data, dict) or data.get("schema") not in READABLE:
        raise ValueError(f"results file {str(path)!r} is not an iftgym compare result (expected schema "
                         f"{' or '.join(READABLE)})")  # fmt: skip
    try:
        return CompareResult.from_json(data)
    except ValueError as err:
        raise ValueError(f"results file {str(path)!r} is damaged: {err}") from None


# -- writing ------------------------------------------------------------------------------------------------------


def _row_json(row: Row | Skipped) -> dict[str, Any]:
    if isinstance(row, Skipped):
        return {"skipped": row.skipped}
    data: dict[str, Any] = {"per_seed": row.per_seed, "summary": row.summary}
    if isinstance(row, AlgorithmResult):
        data.update(wall_time=row.wall_time, stages=row.stages, curves=row.curves, history=row.history)
        for key in ("policies", "strips", "worse_than_untrained", "update", "compute"):
            if getattr(row, key) is not None:
                data[key] = getattr(row, key)
    return data


def _world_json(entry: WorldResult) -> dict[str, Any]:
    data: dict[str, Any] = {"name": entry.name}
    if entry.grid is not None:
        grid = entry.grid
        optimal = {"policy": grid.optimal_policy, "values": grid.optimal_values, "success": grid.optimal_success}
        data.update(rows=grid.rows, optimal=optimal, demonstrated=grid.demonstrated)
    data.update(entry.info)
    data.update(
        metrics={name: {"label": m.label, "lower_is_better": m.lower_is_better} for name, m in entry.metrics.items()},
        algorithms={name: _row_json(run) for name, run in entry.algorithms.items()},
        references={name: _row_json(row) for name, row in entry.references.items()},
        paired=entry.paired,
    )
    if entry.update is not None:
        data["update"] = entry.update
    return data


# -- reading and checking -----------------------------------------------------------------------------------------

# how the checks name the JSON types they expect and find
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
    name = f"{where}.{key}" if where else key
    if key not in obj:
        if required:
            raise ValueError(f"{name} is missing")
        return None
    if not _is(obj[key], kind):
        raise ValueError(f"{name} is {_kind_of(obj[key])}: expected {_KINDS[kind]}")
    return obj[key]


def _optional(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{key} is {_kind_of(value)}: expected an object")
    return value


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


def _check_grid_config(config: dict[str, Any]) -> None:
    """The settings Frozen Lake's figures rebuild the map with."""
    _field(config, "slippery", bool, "config")
    _field(config, "algos", list, "config")
    if config.get("baseline") is not None:
        _field(config, "baseline", str, "config")
    try:
        between("success_rate", _field(config, "success_rate", float, "config"), 0, 1, include_low=False)
        check_gamma(_field(config, "gamma", float, "config"))
    except ValueError as err:
        raise ValueError(f"config: {err}") from None


def _summary(summary: Any, where: str) -> dict[str, Summary | None]:
    """Each metric's summary: ``null`` or ``{"mean", "ci95_low", "ci95_high"}``, numbers or ``null`` (not
    measured; a single seed has no interval)."""
    summary = _object(summary, where)
    for metric, stats in summary.items():
        if stats is not None:
            stats = _object(stats, f"{where}.{_shown(metric)}")
            for key in ("mean", "ci95_low", "ci95_high"):
                if key not in stats or stats[key] is not None:
                    _field(stats, key, float, f"{where}.{_shown(metric)}")
    return summary


def _per_seed(row: dict[str, Any], where: str) -> dict[str, list[float]]:
    """Each metric's values, one number (or ``null``: not measured) per seed."""
    per_seed = _object(row.get("per_seed", {}), f"{where}.per_seed")
    for metric, values in per_seed.items():
        if not (isinstance(values, list) and all(v is None or _is(v, float) for v in values)):
            raise ValueError(f"{where}.per_seed.{_shown(metric)} is not a list of numbers")
    return {metric: [np.nan if v is None else v for v in values] for metric, values in per_seed.items()}


def _row(value: Any, where: str) -> Row:
    row = _object(value, where)
    return Row(_per_seed(row, where), _summary(_field(row, "summary", dict, where), f"{where}.summary"))


def _algorithm(value: Any, where: str, cells: int | None) -> AlgorithmResult | Skipped:
    """One algorithm's entry: trained (its summary and wall time, policies ``(seeds, cells, 4)`` and curves where
    it has them) or skipped (the reason)."""
    run = _object(value, where)
    if "summary" not in run:
        if not isinstance(run.get("skipped"), str):
            raise ValueError(f"{where} has neither a summary nor the reason it was skipped")
        return Skipped(run["skipped"])
    if "policies" in run:
        if cells is None:
            raise ValueError(f"{where}.policies is there, but only a Frozen Lake map has policy matrices")
        _array(run, "policies", where, ("seeds", cells, 4), distribution=True)
    curves = _object(run.get("curves", {}), f"{where}.curves")
    if curves.get("steps"):
        steps = _array(curves, "steps", f"{where}.curves", ("evaluations",))
        for key in curves.keys() - {"steps"}:
            _array(curves, key, f"{where}.curves", ("seeds", len(steps)))
    history = _object(run.get("history", {}), f"{where}.history")
    for key in history:
        _array(history, key, f"{where}.history", ("steps",))
    flag = run.get("worse_than_untrained")
    if flag is not None and not isinstance(flag, bool):
        raise ValueError(f"{where}.worse_than_untrained is {_kind_of(flag)}: expected true, false or null")
    strips = run.get("strips")
    if strips is not None and not (isinstance(strips, list) and all(isinstance(s, dict) for s in strips)):
        raise ValueError(f"{where}.strips is not a list of objects")
    stages = run.get("stages") or []
    if not (isinstance(stages, list) and all(isinstance(s, dict) for s in stages)):
        raise ValueError(f"{where}.stages is not a list of objects")
    update = run.get("update")
    if update is not None:
        _algorithm_update(update, f"{where}.update", cells)
    compute = run.get("compute")
    if compute is not None:
        compute = _object(compute, f"{where}.compute")
        for key in ("steps", "tokens", "seconds"):
            _field(compute, key, float, f"{where}.compute")
    row = _row(run, where)
    return AlgorithmResult(row.per_seed, row.summary, _field(run, "wall_time", float, where), stages, curves,
                           history, run.get("policies"), strips, flag, update, compute)  # fmt: skip


def _integer(obj: dict[str, Any], key: str, where: str, low: int = 0) -> int:
    value = obj.get(key)
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise ValueError(f"{where}.{key} is {_kind_of(value) if key in obj else 'missing'}: expected an integer from "
                         f"{low} up")  # fmt: skip
    return value


def _number_or_null(obj: dict[str, Any], key: str, where: str) -> None:
    if key not in obj:
        raise ValueError(f"{where}.{key} is missing")
    if obj[key] is not None:
        _field(obj, key, float, where)


def _cell_keys(obj: dict[str, Any], where: str, cells: int, nullable: bool) -> None:
    """An object keyed by cell (``"0"``, ``"6"``...) whose values are numbers (or ``null`` where ``nullable``)."""
    for key, value in obj.items():
        if not (key.isdigit() and int(key) < cells):
            raise ValueError(f"{where} has key {_shown(key)!r}: expected cells from 0 to {cells - 1}")
        if not (_is(value, float) or (nullable and value is None)):
            raise ValueError(f"{where}.{key} is {_kind_of(value)}: expected a number")


def _algorithm_update(update: Any, where: str, cells: int | None) -> None:
    """An algorithm's next optimiser steps over training (``--update-maps``): ``{"skipped": reason}``, or its points,
    each where it was taken, the rule, optimiser and learning rate, and what a map (``cells``: its number) or the
    token world (``cells`` ``None``) keeps of it (:func:`_map_point`, :func:`_token_point`)."""
    update = _object(update, where)
    if "skipped" in update:
        _field(update, "skipped", str, where)
        if "seconds" in update:
            _field(update, "seconds", float, where)
        return
    _field(update, "seconds", float, where)
    points = _field(update, "points", list, where)
    if not points:
        raise ValueError(f"{where}.points is empty: expected at least one training point")
    for i, point in enumerate(points):
        at = f"{where}.points[{i}]"
        point = _object(point, at)
        _integer(point, "step", at)
        _integer(point, "stage", at, low=1)
        _integer(point, "stage_step", at)
        _field(point, "rule", str, at)
        _field(point, "optimizer", str, at)
        _field(point, "lr", float, at)
        if cells is None:
            _token_point(point, at)
        else:
            _map_point(point, at, cells)


def _map_point(point: dict[str, Any], at: str, cells: int) -> None:
    """A map's update field at one point: the MSE change on the untrained cells and its split, and the mean field's
    four ``(cells, 4)`` arrays (what the update map draws; a point without them is not drawn)."""
    _number_or_null(point, "own_fraction", at)
    mse = _field(point, "mse", dict, at)
    for key in ("mse_rest_change", "mse_rest_change_measured", "rest", "own", "carried"):
        _field(mse, key, float, f"{at}.mse")
    for key in ("rest_share", "own_share", "carried_share"):
        _number_or_null(mse, key, f"{at}.mse")
    _cell_keys(_field(mse, "shares", dict, f"{at}.mse"), f"{at}.mse.shares", cells, nullable=True)
    _cell_keys(_field(mse, "by_source", dict, f"{at}.mse"), f"{at}.mse.by_source", cells, nullable=False)
    demonstrated = _field(mse, "demonstrated", list, f"{at}.mse")
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < cells for c in demonstrated):
        raise ValueError(f"{at}.mse.demonstrated is not a list of cells: expected integers from 0 to {cells - 1}")
    arrays = _field(point, "field", dict, at, required=False)  # absent: the numbers only (not drawn)
    for key in ("predicted", "measured", "own", "carried") if arrays is not None else ():
        _array(arrays, key, f"{at}.field", (cells, 4))


def _token_point(point: dict[str, Any], at: str) -> None:
    """The token world's update strips at one point (:meth:`iftgym.metrics.update_tokens.TokenStrip.as_json`): the
    prediction's agreement with the measured step, and per shown prompt its target tokens, the loss weights (mean and
    per seed), the target's probability and change, and each position's most raised and lowered tokens."""
    agreement = _field(point, "agreement", dict, at)
    for key in ("slope", "cosine", "relative_error"):
        _number_or_null(agreement, key, f"{at}.agreement")
    for j, strip in enumerate(_field(point, "strips", list, at)):
        where = f"{at}.strips[{j}]"
        strip = _object(strip, where)
        _field(strip, "prompt", str, where)
        _field(strip, "answer", str, where)
        tokens = _field(strip, "tokens", list, where)
        if not tokens or not all(isinstance(token, str) for token in tokens):
            raise ValueError(f"{where}.tokens is not a list of strings: expected a target token per answer position")
        for key in ("weights", "probability", "predicted", "measured"):
            _array(strip, key, where, (len(tokens),))
        _array(strip, "weights_per_seed", where, ("seeds", len(tokens)))
        for key in ("reinforced", "suppressed"):
            moved = _field(strip, key, list, where)
            pairs = [pair for row in moved if isinstance(row, list) for pair in row]
            if len(moved) != len(tokens) or not all(isinstance(row, list) for row in moved) or not all(
                    isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and _is(pair[1], float)
                    for pair in pairs):  # fmt: skip
                raise ValueError(f"{where}.{key} is not a list of [token, change] pairs per answer position")


def _world_update(update: Any, where: str) -> dict[str, Any]:
    """A map's cosines between the algorithms' update fields: ``{"alignment": [{"step", "pairs": {"a | b": {"all",
    "untrained"}}}]}``, each cosine a number in [-1, 1] or ``null``."""
    update = _object(update, where)
    for i, point in enumerate(_field(update, "alignment", list, where)):
        at = f"{where}.alignment[{i}]"
        point = _object(point, at)
        _integer(point, "step", at)
        for pair, cosines in _field(point, "pairs", dict, at).items():
            cosines = _object(cosines, f"{at}.pairs.{_shown(pair)}")
            for key in ("all", "untrained"):
                _number_or_null(cosines, key, f"{at}.pairs.{_shown(pair)}")
                value = cosines[key]
                if value is not None and not -1 - 1e-9 <= value <= 1 + 1e-9:
                    raise ValueError(f"{at}.pairs.{_shown(pair)}.{key} is {value}: expected a cosine in [-1, 1]")
    return update


def _metrics(entry: dict[str, Any], where: str, grid: bool) -> dict[str, Metric]:
    """The metrics a world declares (a version-1 Frozen Lake file declares none: the grid's own)."""
    declared = entry.get("metrics")
    if declared is None and grid:
        return dict(GRID_METRICS)
    metrics = {}
    for name, meta in _field(entry, "metrics", dict, where).items():
        meta = _object(meta, f"{where}.metrics.{_shown(name)}")
        metrics[name] = Metric(_field(meta, "label", str, f"{where}.metrics.{_shown(name)}"),
                               _field(meta, "lower_is_better", bool, f"{where}.metrics.{_shown(name)}"))  # fmt: skip
    return metrics


def _grid(entry: dict[str, Any], where: str) -> Grid:
    """A map's rows, optimal policy, values and success, and demonstrated cells."""
    try:
        rows = validate_map(_field(entry, "rows", list, where))
    except ValueError as err:
        raise ValueError(f"{where}.rows is not a map: {err}") from None
    cells = len(rows) * len(rows[0])
    optimal = _field(entry, "optimal", dict, where)
    _array(optimal, "policy", f"{where}.optimal", (cells, 4), distribution=True)
    _array(optimal, "values", f"{where}.optimal", (cells,))
    success = _field(optimal, "success", float, f"{where}.optimal")
    demonstrated = _field(entry, "demonstrated", list, where, required=False) or []
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < cells for c in demonstrated):
        raise ValueError(f"{where}.demonstrated is not a list of cells: expected integers from 0 to {cells - 1}")
    return Grid(list(rows), optimal["policy"], optimal["values"], success, demonstrated)


def _world_result(value: Any, where: str, grid: bool) -> WorldResult:
    entry = _object(value, where)
    name = _field(entry, "name", str, where)
    grid_info = _grid(entry, where) if grid else None
    cells = None if grid_info is None else len(grid_info.rows) * len(grid_info.rows[0])
    algorithms = {algo: _algorithm(run, f"{where}.algorithms.{_shown(algo)}", cells)
                  for algo, run in _field(entry, "algorithms", dict, where).items()}  # fmt: skip
    given = _field(entry, "references", dict, where, required=False) or {}
    references = {row: _row(result, f"{where}.references.{_shown(row)}") for row, result in given.items()}
    paired = entry.get("paired")
    if paired is not None:
        paired = _object(paired, f"{where}.paired")
        _field(paired, "rows", dict, f"{where}.paired")
    info = {key: _object(entry[key], f"{where}.{key}") for key in INFO if key in entry}
    update = entry.get("update")
    if update is not None:
        if not grid:
            raise ValueError(f"{where}.update is there, but only a Frozen Lake map has update maps")
        update = _world_update(update, f"{where}.update")
    return WorldResult(name, algorithms, references, _metrics(entry, where, grid), paired, grid_info, info, update)
