"""Sweeps: many comparisons over a grid (or random samples) of settings, run where an engine puts them, resumable.

A sweep spec (TOML) names the settings every cell shares, a grid of axes and optionally random samples::

    [base]                      # any CompareConfig field: algos, seeds, steps, lr, maps, policy, slippery...
    algos = ["sft", "ift"]
    seeds = 10

    [grid]                      # every combination of these values is one cell
    "ift.lam" = [0.0, 0.2, 0.5] # RULE.PARAM sets a rule's hyper-parameter (through rule_overrides)
    "ift.gamma" = [0.0, 0.95]
    maps = [["paper"], ["4x4"]] # ... or any CompareConfig field

    [random]                    # optional: `samples` cells drawn uniformly from [low, high] per axis, seeded
    samples = 8
    seed = 0
    "dpo.beta" = [0.05, 0.5]

Each cell is one :func:`~iftgym.experiments.compare.compare` (its seeds batched as usual), checked before any cell
runs, and written atomically to ``FOLDER/cells/<key>.json`` where the key hashes the cell's full settings and the
project's version: a re-run skips finished cells, retries failed ones, and never reuses a cell whose settings
changed. The engine only decides where a cell runs: local worker processes (:func:`iftgym.parallel.in_background`)
or Ray tasks (``backend="ray"``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from iftgym.experiments.compare import CompareConfig, compare
from iftgym.experiments.results import CompareResult
from iftgym.io import atomic_path, read_json, remove_leftovers
from iftgym.parallel import check_workers, in_background
from iftgym.registry import load_plugin
from iftgym.validate import at_least, one_of
from iftgym.version import __version__

BACKENDS = ("local", "ray")
CELLS = "cells"
SPEC_FILE = "sweep.json"
MAX_CELLS = 100_000
CONFIG_FIELDS = {f.name for f in fields(CompareConfig)} - {"rule_overrides", "threads", "plugins"}


@dataclass(frozen=True)
class Cell:
    """One cell of a sweep: the values of its axes (for the report) and the comparison they make."""

    axes: tuple[tuple[str, Any], ...]
    config: CompareConfig = field(compare=False)

    def key(self) -> str:
        """The cell's file name: a hash of its full settings and the project's version."""
        spec = {"config": asdict(self.config), "iftgym": __version__}
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass
class SweepSpec:
    """A parsed sweep: shared settings, grid axes (name -> values) and random axes (name -> (low, high))."""

    base: dict[str, Any]
    grid: dict[str, list[Any]]
    random: dict[str, tuple[float, float]] = field(default_factory=dict)
    samples: int = 0
    seed: int = 0

    def size(self) -> int:
        """The number of cells, from the axes' sizes (nothing is listed)."""
        return math.prod(len(values) for values in self.grid.values()) * max(self.samples, 1)

    def cells(self) -> list[Cell]:
        """Every cell, each checked (a bad value fails here, naming its axis, before anything runs); the size is
        checked against :data:`MAX_CELLS` before any cell is listed."""
        if self.size() > MAX_CELLS:
            raise ValueError(f"the sweep has {self.size():,} cells: expected at most {MAX_CELLS:,}")
        names = list(self.grid)
        combos = list(itertools.product(*self.grid.values())) if names else [()]
        rng = np.random.default_rng(self.seed)
        draws = [{axis: float(rng.uniform(low, high)) for axis, (low, high) in self.random.items()}
                 for _ in range(self.samples)] or [{}]  # fmt: skip
        cells = []
        for combo in combos:
            for draw in draws:
                values = {**dict(zip(names, combo)), **draw}
                cells.append(Cell(tuple(values.items()), _config(self.base, values)))
        return cells


def _config(base: dict[str, Any], values: dict[str, Any]) -> CompareConfig:
    """The comparison of one cell: ``base`` with the cell's axis values; ``RULE.PARAM`` axes set hyper-parameters."""
    settings = {key: value for key, value in base.items() if key != "rule_overrides"}
    overrides = {rule: dict(params) for rule, params in base.get("rule_overrides", {}).items()}
    for axis, value in values.items():
        rule, dot, param = axis.partition(".")
        if dot:
            overrides.setdefault(rule, {})[param] = value
        else:
            settings[axis] = value
    where = ", ".join(f"{axis}={value!r}" for axis, value in values.items()) or "the base settings"
    try:
        return CompareConfig(**settings, rule_overrides=overrides)
    except (ValueError, TypeError) as err:
        raise ValueError(f"sweep cell {where}: {err}") from None


def parse_spec(data: dict[str, Any], source: str = "spec") -> SweepSpec:
    """A sweep spec from its parsed TOML (see the module doc); every section, axis and value is checked."""
    unknown = sorted(set(data) - {"base", "grid", "random"})
    if unknown:
        raise ValueError(f"{source}: unknown section [{unknown[0]}]: expected [base], [grid] and [random]")
    base, grid, random = (dict(data.get(name, {})) for name in ("base", "grid", "random"))
    samples, seed = random.pop("samples", 0), random.pop("seed", 0)
    at_least(f"{source}: random.samples", samples, 0, high=MAX_CELLS)
    at_least(f"{source}: random.seed", seed, 0)
    for key in base:
        _check_axis(key, source, "base")
    for axis, values in grid.items():
        _check_axis(axis, source, "grid")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{source}: grid axis {axis!r} is {values!r}: expected a non-empty list of values")
    ranges = {}
    for axis, bounds in random.items():
        _check_axis(axis, source, "random")
        ok = isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds)
        if not ok or bounds[0] > bounds[1]:
            raise ValueError(f"{source}: random axis {axis!r} is {bounds!r}: expected [low, high] numbers, low <= high")
        ranges[axis] = (float(bounds[0]), float(bounds[1]))
    if ranges and not samples:
        raise ValueError(f"{source}: [random] has axes but samples = 0: set samples = N")
    overlap = sorted(set(grid) & set(ranges))
    if overlap:
        raise ValueError(f"{source}: axis {overlap[0]!r} is both in [grid] and [random]: keep it in one")
    if not grid and not ranges:
        raise ValueError(f"{source}: the sweep has no axes: expected [grid] or [random] axes")
    return SweepSpec(base, grid, ranges, samples, seed)


def _check_axis(name: str, source: str, section: str) -> None:
    rule, dot, param = name.partition(".")
    if dot:
        if not rule or not param:
            raise ValueError(f"{source}: [{section}] {name!r} is malformed: expected RULE.PARAM, e.g. ift.lam")
        return  # the rule and its parameter are checked with the cell (make_rule)
    if name not in CONFIG_FIELDS:
        raise ValueError(f"{source}: unknown [{section}] setting {name!r}: expected RULE.PARAM or one of "
                         f"{', '.join(sorted(CONFIG_FIELDS))}")  # fmt: skip


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read a TOML sweep spec; an unreadable or malformed file is one ``ValueError`` naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read sweep spec {str(path)!r}: {getattr(err, 'strerror', None) or err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"sweep spec {str(path)!r} is not valid TOML: {err}") from None
    except RecursionError:
        raise ValueError(f"sweep spec {str(path)!r} is nested too deeply to read: expected TOML") from None
    return parse_spec(data, f"sweep spec {str(path)!r}")


def compute_cell(cell: Cell) -> dict[str, Any]:
    """One cell's record: its key, axes, version, and the comparison's results or, when it failed, its error (a
    cell's failure is recorded, not raised: the other cells go on)."""
    start = time.perf_counter()
    record: dict[str, Any] = {"key": cell.key(), "axes": dict(cell.axes), "version": __version__}
    try:
        for plugin in cell.config.plugins:  # a worker process (or a Ray task) registers the caller's plugins too
            load_plugin(plugin)
        record["results"] = compare(cell.config, workers=0).to_json()
    except Exception as err:
        record["error"] = f"{type(err).__name__}: {err}"
        record["traceback"] = traceback.format_exc(limit=5)
    record["seconds"] = time.perf_counter() - start
    return record


def run_cell(cell: Cell, folder: str) -> dict[str, Any]:
    """Run one cell and write its record atomically to ``folder/cells/<key>.json`` where it runs (a local worker:
    a cell is kept even if the main process dies). Returns its outcome: key, seconds and error (or ``None``)."""
    return _save(compute_cell(cell), folder)


def _save(record: dict[str, Any], folder: str) -> dict[str, Any]:
    _write_record(record, Path(folder) / CELLS / f"{record['key']}.json")
    return {"key": record["key"], "seconds": record["seconds"], "error": record.get("error")}


def _write_record(record: dict[str, Any], path: Path) -> None:
    from iftgym.io import strict

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(strict(record), allow_nan=False))


def finished(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The records of a sweep folder's cells, by key (read as JSON, never unpickled), their ``results`` typed
    (:class:`CompareResult`); a record that is unreadable, does not match its name or is damaged
    (:func:`whole_record`) is left out: its cell runs again."""
    cells = Path(folder) / CELLS
    records = {}
    for path in sorted(cells.glob("*.json")) if cells.is_dir() else []:
        try:
            record = read_json(path, "sweep cell")
        except ValueError:
            continue
        typed = read_record(record, path.stem)
        if typed is not None:
            records[path.stem] = typed
    return records


def read_record(record: Any, key: str) -> dict[str, Any] | None:
    """``record`` with its results typed, when it is a cell's whole record (its key, its axes, and either an error
    or results that read back whole: :meth:`CompareResult.from_json` checks every field the report reads); else
    ``None``."""
    if not (isinstance(record, dict) and record.get("key") == key and isinstance(record.get("axes"), dict)):
        return None
    if "results" not in record:
        return record if isinstance(record.get("error"), str) else None
    try:
        return {**record, "results": CompareResult.from_json(record["results"])}
    except ValueError:
        return None


def whole_record(record: Any, key: str) -> bool:
    """Whether ``record`` is a cell's whole record (:func:`read_record`)."""
    return read_record(record, key) is not None


@dataclass
class SweepProgress:
    """What a running sweep reports after each change: cells done, failed, running, skipped (finished before)."""

    total: int
    skipped: int
    done: int = 0
    failed: int = 0
    running: int = 0


def run_sweep(
    spec: SweepSpec,
    folder: str | os.PathLike,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
) -> SweepProgress:
    """Run every cell of ``spec`` not finished in ``folder`` yet, on ``backend``: ``"local"`` (``workers``
    processes beside this one, default one per core but one) or ``"ray"`` (Ray tasks on the cluster at ``address``,
    or a local one). Returns the final counts; failed cells are recorded with their error."""
    one_of("backend", backend, BACKENDS)
    cells = spec.cells()
    folder = Path(folder)
    (folder / CELLS).mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder / CELLS)
    with atomic_path(folder / SPEC_FILE) as tmp:
        tmp.write_text(json.dumps(asdict(spec), indent=1))
    records = finished(folder)
    todo = list({cell.key(): cell for cell in cells if "results" not in records.get(cell.key(), {})}.values())
    state = SweepProgress(total=len(cells), skipped=len(cells) - len(todo))
    report = progress or (lambda s: None)
    runner = _ray_cells if backend == "ray" else _local_cells
    for outcome in runner(todo, str(folder), workers, address, state, report):
        state.running -= 1
        state.failed += outcome["error"] is not None
        state.done += outcome["error"] is None
        report(state)
    return state


def _local_cells(
    cells: Sequence[Cell], folder: str, workers: int | None, address: str | None, state: SweepProgress,
    report: Callable[[SweepProgress], None],
) -> Iterator[dict[str, Any]]:  # fmt: skip
    if address is not None:
        raise ValueError("--address is for --backend ray: the local backend runs on this machine's cores")
    workers = check_workers(workers)
    with in_background({cell.key(): (run_cell, (cell, folder)) for cell in cells}, workers) as result:
        state.running = min(len(cells), workers + 1)
        report(state)
        for cell in cells:
            yield result(cell.key())


def _ray_cells(
    cells: Sequence[Cell], folder: str, workers: int | None, address: str | None, state: SweepProgress,
    report: Callable[[SweepProgress], None],
) -> Iterator[dict[str, Any]]:  # fmt: skip
    ray = ray_module()
    started_here = not ray.is_initialized()
    if started_here and address is not None:
        reachable(address)
    if started_here:
        try:
            ray.init(address=address, num_cpus=None if address else check_workers(workers) + 1,
                     include_dashboard=False, log_to_driver=False)  # fmt: skip
        except Exception as err:  # Ray raises ConnectionError, RuntimeError... for an unreachable cluster
            raise ValueError(f"cannot reach the Ray cluster at {address!r}: {str(err).splitlines()[0]}") from None
    try:
        task = ray.remote(num_cpus=1)(_ray_cell)
        pending = [task.remote(cell) for cell in cells]
        state.running = len(pending)
        report(state)
        while pending:  # the records come back to this process, which writes them: no shared filesystem needed
            ready, pending = ray.wait(pending, num_returns=1)
            yield _save(ray.get(ready[0]), folder)
    finally:
        if started_here:
            ray.shutdown()


def _ray_cell(cell: Cell) -> dict[str, Any]:
    """A Ray task: one cell's record, computed with one math thread as a local worker does."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(1):
        return compute_cell(cell)


def reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse, within ``timeout`` seconds, a Ray address ``host:port`` that nothing answers on (``ray.init`` would
    wait minutes); other forms (``auto``, ``ray://...``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as err:
        raise ValueError(f"cannot reach the Ray cluster at {address!r}: {err.strerror or err} (waited "
                         f"{timeout:g} s)") from None  # fmt: skip


def ray_module() -> Any:
    """Ray, or a ``ValueError`` that names the install command."""
    try:
        import ray
    except ImportError:
        raise ValueError('--backend ray needs Ray, an optional extra: pip install -e ".[ray]"') from None
    return ray
