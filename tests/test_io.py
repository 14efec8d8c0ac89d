"""Safe writes: whole files or none, with ordinary permissions; a run's outputs replaced together; leftovers of
killed runs removed; strict JSON."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from contextlib import contextmanager

import pytest

from iftgym.io import (
    MANIFEST,
    MAX_JSON_BYTES,
    STAGING,
    atomic_path,
    read_json,
    remove_leftovers,
    replace_outputs,
    write_json,
)


def test_write_json_round_trips_and_respects_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_json({"a": [1, 2]}, tmp_path / "sub" / "results.json")
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(path.parent) == ["results.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_json({"version": 1}, tmp_path / "results.json")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(path) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("interrupted")
    assert json.loads(path.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["results.json"]


def test_json_is_strict_nan_and_infinity_become_null(tmp_path):
    path = write_json({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}}, tmp_path / "r.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": None}}


def test_a_runs_outputs_replace_the_previous_runs_together(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's own file")
    with replace_outputs(tmp_path) as staging:
        write_json({"run": 1}, staging / "results.json")
        (staging / "a.png").write_bytes(b"1")
        (staging / "b.png").write_bytes(b"1")
        assert not (tmp_path / "results.json").exists()  # nothing visible until the run is complete
    with replace_outputs(tmp_path) as staging:
        write_json({"run": 2}, staging / "results.json")
        (staging / "a.png").write_bytes(b"2")
    names = sorted(os.listdir(tmp_path))
    assert names == [MANIFEST, "a.png", "notes.txt", "results.json"]  # b.png of run 1 is gone, notes.txt stays
    assert json.loads((tmp_path / "results.json").read_text()) == {"run": 2}
    assert json.loads((tmp_path / MANIFEST).read_text()) == {"files": ["a.png", "results.json"]}


def test_an_interrupted_run_leaves_the_previous_outputs_as_they_were(tmp_path):
    with replace_outputs(tmp_path) as staging:
        write_json({"run": 1}, staging / "results.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(KeyboardInterrupt), replace_outputs(tmp_path) as staging:
        write_json({"run": 2}, staging / "results.json")
        raise KeyboardInterrupt
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_leftovers_of_killed_runs_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = [tmp_path / f".results.json.pid{dead_pid}.abc123.tmp", tmp_path / f"{STAGING}{dead_pid}"]
    stale[0].write_text("{half")
    stale[1].mkdir()
    live = [tmp_path / f".x.png.pid{os.getpid()}.def456.tmp", tmp_path / f"{STAGING}{os.getpid()}"]
    live[0].write_text("")
    live[1].mkdir()
    (tmp_path / ".hidden-but-not-ours").write_text("")
    assert sorted(remove_leftovers(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in live) and (tmp_path / ".hidden-but-not-ours").exists()


def test_write_errors_name_the_target_not_the_temporary_file(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(OSError, match=r"cannot write '.*blocker/results\.json'"):
        write_json({}, tmp_path / "blocker" / "results.json")


@contextmanager
def _no_hang(seconds: int = 20):
    """Fail, rather than hang, when the block takes longer than ``seconds`` (a FIFO opened for reading blocks)."""
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the read hung"))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_read_json_refuses_a_fifo_without_opening_it(tmp_path):
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    with _no_hang(), pytest.raises(ValueError, match=r"^cannot read results file '.*results\.json': not a regular"):
        read_json(fifo, "results file")


def test_read_json_refuses_a_folder_a_huge_file_and_deep_nesting_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^cannot read results file '.*': Is a directory$"):
        read_json(tmp_path, "results file")
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as file:  # sparse: nothing is written, and nothing may be read
        file.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(ValueError, match=r"^results file '.*huge\.json' is 1,073,741,825 bytes: at most"):
        read_json(huge, "results file")
    deep = tmp_path / "deep.json"
    for text in ("[" * 200_000 + "]" * 200_000, '{"a":' * 200_000 + "1" + "}" * 200_000):
        deep.write_text(text)
        with pytest.raises(ValueError, match=r"^results file '.*deep\.json' is nested too deeply to read") as err:
            read_json(deep, "results file")
        assert len(str(err.value)) < 200
    long_number = tmp_path / "number.json"
    long_number.write_text("1" * 100_000)
    with pytest.raises(ValueError, match=r"^results file '.*number\.json' is not valid JSON") as err:
        read_json(long_number, "results file")
    assert len(str(err.value)) < 200
    plain = tmp_path / "plain.json"
    plain.write_text('{"a": [1, 2]}')
    assert read_json(plain, "results file") == {"a": [1, 2]}
