"""Frozen Lake maps: the catalogue in ``envs/frozen_lake``, parsing, validation and random maps.

A map is a tuple of equal-length row strings over the letters ``S`` (start), ``F`` (frozen), ``H`` (hole) and
``G`` (goal). Every map that leaves this module has passed :func:`validate_map`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from iftgym.validate import between

Map = tuple[str, ...]
MapLike = str | os.PathLike | Sequence[str]

TILES = "SFHG"
MAX_SIDE = 64
# (row, col) offsets of the actions LEFT, DOWN, RIGHT, UP in Gymnasium's numbering.
MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))


def catalogue_dir() -> Path:
    """The folder holding the map catalogue: the repository's ``envs/frozen_lake``, installed as package data."""
    return Path(str(resources.files("iftgym.data") / "frozen_lake"))


def catalogue() -> dict[str, Map]:
    """All catalogue maps by name, sorted by name."""
    folder = catalogue_dir()
    return {path.stem: read_map_file(path) for path in sorted(folder.glob("*.txt"))}


def catalogue_description(name: str) -> str:
    """The comment lines at the top of a catalogue map file, joined into one paragraph."""
    lines = (catalogue_dir() / f"{name}.txt").read_text().splitlines()
    return " ".join(line.lstrip("# ").strip() for line in lines if line.startswith("#"))


def read_map_file(path: str | os.PathLike) -> Map:
    """Read a map file: one row per line, ``#`` comment lines and blank lines ignored."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"cannot read map file {str(path)!r}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read map file {str(path)!r}: it is not UTF-8 text") from None
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    try:
        return validate_map(rows)
    except ValueError as err:
        raise ValueError(f"map file {str(path)!r}: {err}") from None


def load_map(spec: MapLike) -> Map:
    """Load a map from a catalogue name (``"paper"``), a file path, or a sequence of row strings."""
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        names = catalogue()
        if text in names:
            return names[text]
        if Path(text).is_file():
            return read_map_file(text)
        raise ValueError(
            f"unknown map {text!r}: expected a catalogue name ({', '.join(names)}), a path to a map file, "
            "or a list of row strings"
        )
    return validate_map(spec)


def validate_map(rows: Iterable[str]) -> Map:
    """Check a map and return it as a tuple of rows; raise ``ValueError`` naming the broken rule."""
    if isinstance(rows, str):
        raise ValueError("a map is a sequence of row strings, not one string")
    rows = tuple(rows)
    if not rows:
        raise ValueError("map is empty: expected at least one row of the letters S, F, H, G")
    for r, row in enumerate(rows):
        if not isinstance(row, str):
            raise ValueError(f"row {r} is {type(row).__name__}, expected a string of the letters S, F, H, G")
    width = len(rows[0])
    if width == 0:
        raise ValueError("row 0 is empty: expected at least one of the letters S, F, H, G")
    for r, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"map is not rectangular: row {r} has {len(row)} cells, row 0 has {width}")
        for c, tile in enumerate(row):
            if tile not in TILES:
                raise ValueError(f"invalid tile {tile!r} at row {r}, column {c}: expected one of S, F, H, G")
    if len(rows) > MAX_SIDE or width > MAX_SIDE:
        raise ValueError(f"map is {len(rows)}x{width}: at most {MAX_SIDE}x{MAX_SIDE} is supported")
    starts = [(r, c) for r, row in enumerate(rows) for c, tile in enumerate(row) if tile == "S"]
    if len(starts) != 1:
        raise ValueError(f"map must have exactly one start S, found {len(starts)}")
    if not any("G" in row for row in rows):
        raise ValueError("map has no goal G: expected at least one")
    if shortest_route(rows) is None:
        raise ValueError(f"no goal G is reachable from the start S at row {starts[0][0]}, column {starts[0][1]}")
    return rows


Cell = tuple[int, int]


def breadth_first(rows: Map, blocked: frozenset[Cell] = frozenset()) -> tuple[dict[Cell, int], dict[Cell, Cell | None]]:
    """Fewest moves from S to every cell a walk can reach, and each cell's parent on one shortest walk.

    The one breadth-first search of the toolkit: moves never leave the map or enter a ``blocked`` cell, and a
    walk ends on entering a hole or a goal (they are reached but never left). Ties between equally short walks are
    broken by the action order LEFT, DOWN, RIGHT, UP; both dicts are in discovery order.
    """
    start = next((r, c) for r, row in enumerate(rows) for c, tile in enumerate(row) if tile == "S")
    distance, parent = {start: 0}, {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if rows[cell[0]][cell[1]] in "HG":
            continue
        for dr, dc in MOVES:
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < len(rows) and 0 <= nxt[1] < len(rows[0]) and nxt not in parent and nxt not in blocked:
                distance[nxt], parent[nxt] = distance[cell] + 1, cell
                queue.append(nxt)
    return distance, parent


def shortest_route(rows: Map, blocked: frozenset[Cell] = frozenset()) -> list[Cell] | None:
    """Cells of a shortest hole-free path from S to the nearest G (see :func:`breadth_first`), avoiding
    ``blocked`` cells; ``None`` when no such path exists."""
    distance, parent = breadth_first(rows, blocked)
    goals = [cell for cell in distance if rows[cell[0]][cell[1]] == "G"]
    if not goals:
        return None
    path = [min(goals, key=distance.__getitem__)]  # the first goal found at the least distance
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    return path[::-1]


def random_map(size: int | tuple[int, int] = 8, p_hole: float = 0.2, seed: int | None = None) -> Map:
    """A random map with S at the top left and G at the bottom right, resampled until G is reachable.

    ``size`` is a side length or ``(rows, cols)``; the same seed always gives the same map.
    """
    nrow, ncol = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if not (1 <= nrow <= MAX_SIDE and 1 <= ncol <= MAX_SIDE) or nrow * ncol < 2:
        raise ValueError(f"map size {nrow}x{ncol} is out of range: each side in 1..{MAX_SIDE}, at least 2 cells")
    between("p_hole", p_hole, 0, 1, include_high=False)
    rng = np.random.default_rng(seed)
    while True:
        grid = np.where(rng.random((nrow, ncol)) < p_hole, "H", "F")
        grid[0, 0], grid[-1, -1] = "S", "G"
        rows = tuple("".join(row) for row in grid)
        if shortest_route(rows) is not None:
            return rows
