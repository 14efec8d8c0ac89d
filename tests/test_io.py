"""Atomic writes: whole files or none, with the permissions an ordinary open() would give."""

from __future__ import annotations

import json
import os
import stat

import pytest

from iftgym.io import atomic_path, write_json


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
