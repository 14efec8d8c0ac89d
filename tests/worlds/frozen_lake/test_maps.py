"""Maps: the catalogue, loading by name / file / rows, validation messages, random maps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import iftgym
from iftgym.worlds.frozen_lake.maps import (
    MAX_SIDE,
    catalogue,
    catalogue_description,
    load_map,
    random_map,
    read_map_file,
    shortest_route,
    validate_map,
)

CATALOGUE_NAMES = ("4x4", "8x8", "bridge-3x8", "detour-5x5", "lake-10x10", "paper")

LIMIT = f"at most {MAX_SIDE}x{MAX_SIDE} is supported"


GYMNASIUM_4X4 = ("SFFF", "FHFH", "FFFH", "HFFG")


GYMNASIUM_8X8 = (
    "SFFFFFFF",
    "FFFFFFFF",
    "FFFHFFFF",
    "FFFFFHFF",
    "FFFHFFFF",
    "FHHFFFHF",
    "FHFFHFHF",
    "FFFHFFFG",
)


# -- the catalogue --------------------------------------------------------------------------------------------
def test_catalogue_lists_every_map_sorted_by_name():
    names = tuple(catalogue())
    assert names == CATALOGUE_NAMES


@pytest.mark.parametrize("name", CATALOGUE_NAMES)
def test_catalogue_maps_are_valid_and_load_by_name(name):
    rows = load_map(name)
    assert rows == catalogue()[name]
    assert validate_map(rows) == rows
    assert isinstance(rows, tuple)
    assert all(isinstance(row, str) for row in rows)
    assert sum(row.count("S") for row in rows) == 1
    assert any("G" in row for row in rows)
    assert shortest_route(rows) is not None


@pytest.mark.parametrize("name", CATALOGUE_NAMES)
def test_catalogue_maps_have_a_description(name):
    text = catalogue_description(name)
    assert len(text) > 20
    assert "#" not in text[:1]


def test_catalogue_matches_gymnasium_default_maps():
    from gymnasium.envs.toy_text.frozen_lake import MAPS

    assert load_map("4x4") == tuple(MAPS["4x4"]) == GYMNASIUM_4X4
    assert load_map("8x8") == tuple(MAPS["8x8"]) == GYMNASIUM_8X8


def test_catalogue_shapes():
    shapes = {name: (len(rows), len(rows[0])) for name, rows in catalogue().items()}
    assert shapes == {
        "4x4": (4, 4),
        "8x8": (8, 8),
        "bridge-3x8": (3, 8),
        "detour-5x5": (5, 5),
        "lake-10x10": (10, 10),
        "paper": (6, 6),
    }


def test_paper_map_layout():
    assert load_map("paper") == ("SFFFFF", "FHHHHF", "FHHHHF", "FFFGHF", "HHHFHF", "HHHFFF")


def test_package_exports_map_helpers():
    assert iftgym.load_map is load_map
    assert iftgym.random_map is random_map
    assert iftgym.validate_map is validate_map


def test_package_catalogue_function_is_not_shadowed_by_the_catalogue_subpackage():
    # Loading any catalogue map imports the package-data subpackage ``iftgym.catalogue`` (``envs/``), and
    # importing a subpackage sets the attribute of the same name on ``iftgym``: ``iftgym.catalogue`` (exported
    # in ``__all__`` as the function) then silently becomes a module, and ``from iftgym import catalogue``
    # gives something that cannot be called.
    load_map("paper")
    assert callable(iftgym.catalogue), f"iftgym.catalogue is {iftgym.catalogue!r}, expected the catalogue() function"
    assert iftgym.catalogue() == catalogue()


# -- loading --------------------------------------------------------------------------------------------------
def test_load_map_from_list_of_rows_returns_tuple():
    assert load_map(["SF", "HG"]) == ("SF", "HG")
    assert load_map(("SFG",)) == ("SFG",)


def test_load_map_from_file_path_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# a comment line\n# another comment\n\nSFF\nFHF\n\nFFG\n")
    expected = ("SFF", "FHF", "FFG")
    assert load_map(path) == expected  # a Path
    assert load_map(str(path)) == expected  # a str
    assert read_map_file(path) == expected


def test_load_map_file_strips_surrounding_whitespace(tmp_path):
    path = tmp_path / "spaced.txt"
    path.write_text("  SFF  \r\nFFG\r\n")
    assert load_map(path) == ("SFF", "FFG")


def test_load_map_file_with_invalid_map_names_the_file(tmp_path):
    path = tmp_path / "broken.txt"
    path.write_text("# comment\nSFF\nFXG\n")
    with pytest.raises(ValueError, match=r"map file '.*broken\.txt': invalid tile 'X' at row 1, column 1"):
        load_map(path)


def test_load_map_unknown_name_lists_catalogue():
    with pytest.raises(ValueError, match=r"unknown map 'no-such-map'") as info:
        load_map("no-such-map")
    message = str(info.value)
    for name in CATALOGUE_NAMES:
        assert name in message
    assert "expected a catalogue name (4x4, 8x8, bridge-3x8, detour-5x5, lake-10x10, paper)" in message


def test_load_map_missing_path_is_unknown(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(ValueError, match=r"unknown map '.*missing\.txt'.*catalogue name"):
        load_map(missing)


def test_read_map_file_unreadable_paths(tmp_path):
    with pytest.raises(ValueError, match=r"cannot read map file '.*nothing-here\.txt'"):
        read_map_file(tmp_path / "nothing-here.txt")
    # A directory cannot be read as a map file either.
    with pytest.raises(ValueError, match=r"cannot read map file '.*'"):
        read_map_file(tmp_path)


def test_map_file_that_is_not_text_names_the_file(tmp_path):
    # A file that exists but is not UTF-8 text is unreadable as a map: the error says which file, as every other
    # map-file error does ("cannot read map file ..." / "map file ...: ..."), not a bare UnicodeDecodeError.
    path = tmp_path / "binary.txt"
    path.write_bytes(b"\xff\xfeSF\nFG\n")
    with pytest.raises(ValueError, match=r"binary\.txt"):
        load_map(path)


def test_load_map_directory_is_not_a_map(tmp_path):
    with pytest.raises(ValueError, match="unknown map"):
        load_map(tmp_path)


# -- validation messages --------------------------------------------------------------------------------------
def test_empty_map():
    with pytest.raises(ValueError, match=r"^map is empty: expected at least one row"):
        validate_map([])


def test_single_string_instead_of_rows():
    with pytest.raises(ValueError, match=r"^a map is a sequence of row strings, not one string$"):
        validate_map("SFFG")


def test_non_string_row_is_named():
    with pytest.raises(ValueError, match=r"^row 1 is int, expected a string"):
        validate_map(["SFG", 3])


def test_empty_first_row():
    with pytest.raises(ValueError, match=r"^row 0 is empty"):
        validate_map([""])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["SFF", "FF", "FFG"], "map is not rectangular: row 1 has 2 cells, row 0 has 3"),
        (["SFF", "FFF", "FFFG"], "map is not rectangular: row 2 has 4 cells, row 0 has 3"),
    ],
)
def test_non_rectangular_names_the_row(rows, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        validate_map(rows)


@pytest.mark.parametrize(
    ("rows", "tile", "row", "col"),
    [
        (["SFX", "FFG"], "X", 0, 2),
        (["SFF", "FfG"], "f", 1, 1),
        (["SFF", "FFF", " FG"], " ", 2, 0),
        (["SFF", "FF.", "FFG"], ".", 1, 2),
    ],
)
def test_bad_character_names_row_and_column(rows, tile, row, col):
    message = f"invalid tile {tile!r} at row {row}, column {col}: expected one of S, F, H, G"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        validate_map(rows)


def test_no_start():
    with pytest.raises(ValueError, match=r"^map must have exactly one start S, found 0$"):
        validate_map(["FFF", "FFG"])


def test_two_starts():
    with pytest.raises(ValueError, match=r"^map must have exactly one start S, found 2$"):
        validate_map(["SFS", "FFG"])


def test_no_goal():
    with pytest.raises(ValueError, match=r"^map has no goal G"):
        validate_map(["SFF", "FFF"])


def test_goal_unreachable_names_the_start():
    with pytest.raises(ValueError, match=r"^no goal G is reachable from the start S at row 0, column 1$"):
        validate_map(["FSF", "HHH", "FGF"])


def test_goal_only_diagonally_adjacent_is_unreachable():
    with pytest.raises(ValueError, match=r"no goal G is reachable from the start S at row 0, column 0"):
        validate_map(["SH", "HG"])


def test_too_many_rows():
    rows = ["S" + "F" * 2] + ["FFF"] * (MAX_SIDE - 1) + ["FFG"]
    with pytest.raises(ValueError, match=rf"^map is {MAX_SIDE + 1}x3: {LIMIT}$"):
        validate_map(rows)


def test_too_many_columns():
    rows = ["S" + "F" * MAX_SIDE, "F" * MAX_SIDE + "G"]
    with pytest.raises(ValueError, match=rf"^map is 2x{MAX_SIDE + 1}: {LIMIT}$"):
        validate_map(rows)


def test_largest_allowed_map_is_accepted():
    rows = ["S" + "F" * (MAX_SIDE - 1)] + ["F" * MAX_SIDE] * (MAX_SIDE - 2) + ["F" * (MAX_SIDE - 1) + "G"]
    assert validate_map(rows) == tuple(rows)


def test_several_goals_are_allowed():
    assert validate_map(["GSG"]) == ("GSG",)


# -- shortest routes ------------------------------------------------------------------------------------------
def test_shortest_route_on_corridor():
    assert shortest_route(("SFFG",)) == [(0, 0), (0, 1), (0, 2), (0, 3)]


def test_shortest_route_goes_around_holes():
    route = shortest_route(("SHG", "FFF"))
    assert route == [(0, 0), (1, 0), (1, 1), (1, 2), (0, 2)]


def test_shortest_route_respects_blocked_cells():
    rows = ("SFF", "FHF", "FFG")
    # Ties broken by LEFT, DOWN, RIGHT, UP: down first.
    assert shortest_route(rows) == [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]
    assert shortest_route(rows, blocked=frozenset({(1, 0)})) == [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2)]
    assert shortest_route(rows, blocked=frozenset({(1, 0), (0, 1)})) is None


def test_shortest_route_reaches_the_nearest_goal():
    assert shortest_route(("GFSFFG",)) == [(0, 2), (0, 1), (0, 0)]


# -- random maps ----------------------------------------------------------------------------------------------
def _is_solvable(rows):
    return shortest_route(rows) is not None


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nrow=st.integers(2, 16),
    ncol=st.integers(2, 16),
    p_hole=st.floats(0.0, 0.6),
)
def test_random_maps_are_reproducible_valid_and_solvable(seed, nrow, ncol, p_hole):
    rows = random_map((nrow, ncol), p_hole=p_hole, seed=seed)
    assert rows == random_map((nrow, ncol), p_hole=p_hole, seed=seed)
    assert len(rows) == nrow
    assert all(len(row) == ncol for row in rows)
    assert rows[0][0] == "S"
    assert rows[-1][-1] == "G"
    assert set("".join(rows)) <= set("SFHG")
    assert "".join(rows).count("S") == 1
    assert "".join(rows).count("G") == 1
    assert validate_map(rows) == rows
    assert _is_solvable(rows)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), size=st.integers(2, 12))
def test_random_square_maps_accept_an_int_size(seed, size):
    rows = random_map(size, seed=seed)
    assert len(rows) == size
    assert all(len(row) == size for row in rows)
    assert rows == random_map((size, size), seed=seed)


def test_random_map_different_seeds_differ():
    maps = {random_map(8, p_hole=0.3, seed=seed) for seed in range(20)}
    assert len(maps) > 15


def test_random_map_without_holes():
    assert random_map((3, 4), p_hole=0.0, seed=1) == ("SFFF", "FFFF", "FFFG")


def test_random_map_non_square_shapes():
    for shape in [(1, 2), (2, 1), (3, 7), (7, 3), (1, 12), (12, 5)]:
        rows = random_map(shape, p_hole=0.3, seed=5)
        assert (len(rows), len(rows[0])) == shape
        assert _is_solvable(rows)
    assert random_map((1, 2), seed=0) == ("SG",)


def test_random_map_high_hole_rate_is_still_solvable():
    rows = random_map(6, p_hole=0.6, seed=3)
    assert sum(row.count("H") for row in rows) > 0
    assert _is_solvable(rows)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (0, "map size 0x0 is out of range"),
        (1, "map size 1x1 is out of range"),
        ((MAX_SIDE + 1, 2), f"map size {MAX_SIDE + 1}x2 is out of range"),
        ((2, 0), "map size 2x0 is out of range"),
    ],
)
def test_random_map_bad_size(size, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        random_map(size)


@pytest.mark.parametrize("p_hole", [-0.1, 1.0, 1.5])
def test_random_map_bad_p_hole(p_hole):
    with pytest.raises(ValueError, match=rf"^p_hole={re.escape(str(p_hole))} is out of range"):
        random_map(4, p_hole=p_hole)


def test_catalogue_dir_contains_the_txt_files():
    from iftgym.worlds.frozen_lake.maps import catalogue_dir

    names = sorted(path.stem for path in Path(catalogue_dir()).glob("*.txt"))
    assert tuple(names) == CATALOGUE_NAMES


# -- random maps: bounded resampling, and the same maps as ever ---------------------------------------------------
def _old_random_map(nrow, ncol, p_hole, seed):
    """random_map as it was: one map at a time, resampled until solvable (without a bound)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    while True:
        grid = np.where(rng.random((nrow, ncol)) < p_hole, "H", "F")
        grid[0, 0], grid[-1, -1] = "S", "G"
        rows = tuple("".join(row) for row in grid)
        if shortest_route(rows) is not None:
            return rows


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nrow=st.integers(1, 10),
    ncol=st.integers(1, 10),
    p_hole=st.sampled_from([0.0, 0.1, 0.3, 0.45]),
)
def test_random_map_draws_the_same_maps_as_one_at_a_time(seed, nrow, ncol, p_hole):
    # maps are now drawn in batches: the seed of a map must still give the map it always gave
    if nrow * ncol >= 2:
        assert random_map((nrow, ncol), p_hole, seed) == _old_random_map(nrow, ncol, p_hole, seed)


@pytest.mark.parametrize(
    ("size", "p_hole", "draws"),
    [(8, 0.99, 1_000_000), (5, 0.99, 1_000_000), ((2, 16), 0.9, 1_000_000), (64, 0.6, 16384), ((64, 2), 0.5, 524288)],
)
def test_random_map_gives_up_on_a_hopeless_hole_rate(size, p_hole, draws):
    # random_map(8, p_hole=0.99) used to resample forever
    import signal

    def expire(*_):
        raise TimeoutError("random_map still running after 30 s")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        with pytest.raises(ValueError) as info:
            random_map(size, p_hole=p_hole, seed=0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    nrow, ncol = (size, size) if isinstance(size, int) else size
    assert str(info.value) == (
        f"could not draw a solvable {nrow}x{ncol} map with p_hole={p_hole}: none of {draws} random maps had a path "
        "from S to G that avoids the holes; lower p_hole"
    )


@pytest.mark.parametrize("size", [2.5, True, "8", (3,), (3, 4, 5), (3.5, 4), (True, 4), None, [[2, 2]]])
def test_random_map_size_must_be_integers(size):
    with pytest.raises(ValueError, match=r"^size=.* is not a map size: expected a side length or \(rows, cols\)"):
        random_map(size)


def test_random_map_accepts_numpy_sizes_and_refuses_bad_seeds():
    import numpy as np

    assert random_map(np.int64(3), seed=1) == random_map([3, 3], seed=1) == random_map(np.array([3, 3]), seed=1)
    with pytest.raises(ValueError, match=r"^map size 0x5 is out of range"):
        random_map((0, 5))
    with pytest.raises(ValueError, match=r"^seed=-1 is out of range: expected at least 0 \(or None\)$"):
        random_map(4, seed=-1)
    with pytest.raises(ValueError, match=r"^seed=1\.5 is float: expected an integer$"):
        random_map(4, seed=1.5)
    with pytest.raises(ValueError, match=r"^p_hole=nan is out of range: expected a finite number$"):
        random_map(4, p_hole=float("nan"))
    with pytest.raises(ValueError, match=r"^p_hole=True is bool: expected a number$"):
        random_map(4, p_hole=True)


# -- maps of the wrong type or size -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (5, "map=5 is int: expected a catalogue name, a path to a map file, or a list of row strings"),
        (None, "map=None is NoneType: expected a catalogue name"),
        (b"SG", "map=b'SG' is bytes: expected a catalogue name"),
        (["SF", 3], "row 1 is int, expected a string"),
    ],
)
def test_load_map_refuses_what_is_no_map(spec, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        load_map(spec)


def test_validate_map_stops_reading_huge_maps_early():
    import itertools

    with pytest.raises(ValueError, match=rf"^map is more than {MAX_SIDE}x2: {LIMIT}$"):
        validate_map(itertools.repeat("SF"))  # an endless iterator of rows
    with pytest.raises(ValueError, match=rf"^map is 1000x2: {LIMIT}$"):
        validate_map(["SG"] + ["FF"] * 999)
    with pytest.raises(ValueError, match=rf"^map is 2x1000000: {LIMIT}$"):
        validate_map(["S" + "X" * 999_999, "G"])  # refused before each tile is looked at
    with pytest.raises(ValueError, match=r"^a map is a sequence of row strings, not int$"):
        validate_map(5)


def test_a_huge_map_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.txt"
    path.write_text("SG\n" + "# comment\n" * 200_000)
    with pytest.raises(ValueError, match=r"^map file '.*huge\.txt' is 2000003 bytes long: expected at most 1000000"):
        load_map(path)
