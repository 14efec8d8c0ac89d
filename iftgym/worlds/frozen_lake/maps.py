"""Frozen Lake maps: the catalogue in ``envs/frozen_lake``, parsing, validation and random maps.

A map is a tuple of equal-length row strings over the letters ``S`` (start), ``F`` (frozen), ``H`` (hole) and
``G`` (goal). Every map that leaves this module has passed :func:`validate_map`.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from iftgym.validate import MAX_SIDE, at_least, between

Map = tuple[str, ...]
MapLike = str | os.PathLike | Sequence[str]

TILES = "SFHG"
MAX_MAP_FILE_BYTES = 1_000_000  # 256 rows of 256 tiles (66 kB), with room for comments; a bigger file is not a map
# random_map draws at most this many maps, and at most MAP_DRAW_CELLS cells in all (about a second of work), before
# it gives up on a hole probability that makes a solvable map too unlikely.
MAX_MAP_DRAWS = 1_000_000
MAP_DRAW_CELLS = 2**26
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
        n_bytes = path.stat().st_size
        if path.is_file() and n_bytes > MAX_MAP_FILE_BYTES:  # refuse before reading it all
            raise ValueError(f"map file {str(path)!r} is {n_bytes} bytes long: expected at most "
                             f"{MAX_MAP_FILE_BYTES} ({MAX_SIDE} rows of {MAX_SIDE} tiles, and comments)")  # fmt: skip
        text = path.read_text(encoding="utf-8")
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
    if isinstance(spec, (bytes, bytearray)) or not isinstance(spec, Iterable):
        raise ValueError(f"map={spec!r} is {type(spec).__name__}: expected a catalogue name, a path to a map file, "
                         "or a list of row strings")  # fmt: skip
    return validate_map(spec)


def validate_map(rows: Iterable[str]) -> Map:
    """Check a map and return it as a tuple of rows; raise ``ValueError`` naming the broken rule."""
    if isinstance(rows, str):
        raise ValueError("a map is a sequence of row strings, not one string")
    if isinstance(rows, (bytes, bytearray)) or not isinstance(rows, Iterable):
        raise ValueError(f"a map is a sequence of row strings, not {type(rows).__name__}")
    n_rows = len(rows) if isinstance(rows, Sequence) else None
    rows = tuple(itertools.islice(rows, MAX_SIDE + 1))  # an iterator may never end: one row past the limit, no more
    if n_rows is None:
        n_rows = len(rows) if len(rows) <= MAX_SIDE else f"more than {MAX_SIDE}"
    if not rows:
        raise ValueError("map is empty: expected at least one row of the letters S, F, H, G")
    for r, row in enumerate(rows):
        if not isinstance(row, str):
            raise ValueError(f"row {r} is {type(row).__name__}, expected a string of the letters S, F, H, G")
    width = len(rows[0])
    if width == 0:
        raise ValueError("row 0 is empty: expected at least one of the letters S, F, H, G")
    widest = max(len(row) for row in rows)
    if len(rows) > MAX_SIDE or widest > MAX_SIDE:  # before looking at each tile of a huge map
        raise ValueError(f"map is {n_rows}x{widest}: at most {MAX_SIDE}x{MAX_SIDE} is supported")
    for r, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"map is not rectangular: row {r} has {len(row)} cells, row 0 has {width}")
        for c, tile in enumerate(row):
            if tile not in TILES:
                raise ValueError(f"invalid tile {tile!r} at row {r}, column {c}: expected one of S, F, H, G")
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


def map_shape(size: object) -> tuple[int, int]:
    """``(rows, cols)`` of a map size (a side length or a pair), checked: integers, each side in ``1..MAX_SIDE``, at
    least 2 cells."""

    def is_int(value: object) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))

    if is_int(size):
        nrow = ncol = int(size)
    elif isinstance(size, (tuple, list, np.ndarray)) and len(size) == 2 and all(map(is_int, size)):
        nrow, ncol = (int(side) for side in size)
    else:
        raise ValueError(f"size={size!r} is not a map size: expected a side length or (rows, cols), integers "
                         f"in 1..{MAX_SIDE}")  # fmt: skip
    if not (1 <= nrow <= MAX_SIDE and 1 <= ncol <= MAX_SIDE) or nrow * ncol < 2:
        raise ValueError(f"map size {nrow}x{ncol} is out of range: each side in 1..{MAX_SIDE}, at least 2 cells")
    return nrow, ncol


def max_map_draws(nrow: int, ncol: int) -> int:
    """How many random maps :func:`random_map` draws at most before it gives up: ``MAX_MAP_DRAWS``, fewer for large
    maps (``MAP_DRAW_CELLS`` cells in all)."""
    return max(1, min(MAX_MAP_DRAWS, MAP_DRAW_CELLS // (nrow * ncol)))


def _may_connect(holes: np.ndarray) -> np.ndarray:
    """``(B,)``: False for the maps of ``(B, rows, cols)`` that surely have no path from the top left to the bottom
    right corner (a path crosses every row and every column, and leaves S and enters G through a free neighbour);
    cheap, so that the search below runs only on the rest."""
    free = ~holes
    ok = free.any(axis=2).all(axis=1) & free.any(axis=1).all(axis=1)
    if holes.shape[1] > 1 and holes.shape[2] > 1:
        ok &= (free[:, 0, 1] | free[:, 1, 0]) & (free[:, -1, -2] | free[:, -2, -1])
    return ok


def _corners_connect(holes: np.ndarray) -> bool:
    """Whether a walk from the top left corner reaches the bottom right one without entering a hole: exactly
    ``shortest_route(rows) is not None`` for a map with S and G in those corners and no other goal."""
    nrow, ncol = holes.shape
    free, goal = (~holes).ravel().tolist(), nrow * ncol - 1
    seen = bytearray(nrow * ncol)
    seen[0], stack = 1, [0]
    while stack:
        cell = stack.pop()
        r, c = divmod(cell, ncol)
        steps = ((cell - 1, c > 0), (cell + 1, c < ncol - 1), (cell - ncol, r > 0), (cell + ncol, r < nrow - 1))
        for nxt, inside in steps:
            if inside and free[nxt] and not seen[nxt]:
                if nxt == goal:
                    return True
                seen[nxt] = 1
                stack.append(nxt)
    return False


def draw_solvable_map(
    nrow: int, ncol: int, p_hole: float, rng: np.random.Generator, max_draws: int
) -> tuple[Map | None, int]:
    """The first of up to ``max_draws`` random maps (S top left, G bottom right, each other cell a hole with
    probability ``p_hole``) whose G is reachable, or ``None``; and how many maps were drawn.

    Maps are drawn in batches of growing size, which takes the same numbers from ``rng`` in the same order as one
    map at a time, so a seed gives the same map as drawing them one by one.
    """
    drawn, batch = 0, 1
    largest = max(1, 2**20 // (nrow * ncol))  # at most about 8 MB of uniforms at a time
    while drawn < max_draws:
        k = min(batch, largest, max_draws - drawn)
        holes = rng.random((k, nrow, ncol)) < p_hole
        holes[:, 0, 0] = holes[:, -1, -1] = False
        for index in np.flatnonzero(_may_connect(holes)):
            if _corners_connect(holes[index]):
                grid = np.where(holes[index], "H", "F")
                grid[0, 0], grid[-1, -1] = "S", "G"
                return tuple("".join(row) for row in grid), drawn + int(index) + 1
        drawn, batch = drawn + k, batch * 2
    return None, drawn


def no_solvable_map(nrow: int, ncol: int, p_hole: float, drawn: int) -> ValueError:
    """The error of :func:`random_map` when ``drawn`` maps had no path from S to G."""
    return ValueError(f"could not draw a solvable {nrow}x{ncol} map with p_hole={p_hole}: none of {drawn} random maps "
                      "had a path from S to G that avoids the holes; lower p_hole")  # fmt: skip


def random_map(size: int | tuple[int, int] = 8, p_hole: float = 0.2, seed: int | None = None) -> Map:
    """A random map with S at the top left and G at the bottom right, resampled until G is reachable.

    ``size`` is a side length or ``(rows, cols)``; the same seed always gives the same map. After
    :func:`max_map_draws` maps without a path (a ``p_hole`` too high for the size), raise ``ValueError``.
    """
    nrow, ncol = map_shape(size)
    between("p_hole", p_hole, 0, 1, include_high=False)
    if seed is not None:
        at_least("seed", seed, 0, note="or None")
    rows, drawn = draw_solvable_map(nrow, ncol, p_hole, np.random.default_rng(seed), max_map_draws(nrow, ncol))
    if rows is None:
        raise no_solvable_map(nrow, ncol, p_hole, drawn)
    return rows
