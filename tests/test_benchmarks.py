"""The benchmarks' ``--json`` files (``benchmarks/_results.py``) and the README's Speed table rendered from them
(``docs/make_readme_tables.py``), on a small synthetic file: no benchmark runs here."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results() -> ModuleType:
    return load(ROOT / "benchmarks" / "_results.py", "bench_results")


@pytest.fixture
def tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``make_readme_tables`` reading ``tmp_path/results``, with two benchmarks: bench_env and bench_lm."""
    module = load(ROOT / "docs" / "make_readme_tables.py", "make_readme_tables")
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(module, "BENCHMARKS", {name: module.BENCHMARKS[name] for name in ("bench-env.json",
                                                                                         "bench-lm.json")})  # fmt: skip
    (tmp_path / "results").mkdir()
    return module


def synthetic(results: ModuleType, path: Path, argv: list[str]) -> dict:
    """A bench_env file: one target met (20x >= 10x), one missed (0.5x < 1x), one number without a target, a check
    that held and one number not measured."""
    args = argparse.Namespace(json=str(path), rounds=3)
    record = results.Results("bench_env", args, argv)
    record.number("vector", 20.0, "x", "deterministic", (">=", 10.0))
    record.number("single", 0.5, "x", "slippery", (">=", 1.0))
    record.number("seconds", 0.123, "s", "one round")
    record.number("same", True, "", "identical answers", ("==", True))
    record.number("gpu", None, "tokens/s", "SFT")
    record.target("vector env at least 10x", "vector", "seconds")
    record.target("single env at parity", "single", "same")
    record.target("tokens/s on CUDA", "gpu", note="no CUDA device")
    assert record.write() == path
    return json.loads(path.read_text())


def test_the_json_writer_records_the_numbers_their_targets_and_the_machine(results: ModuleType, tmp_path: Path):
    data = synthetic(results, tmp_path / "out" / "bench-env.json", ["--rounds", "3", "--json", "runs/bench-env.json"])
    assert data["schema"] == "iftgym.bench/1" and data["benchmark"] == "bench_env"
    assert data["command"] == "python benchmarks/bench_env.py --rounds 3 --json runs/bench-env.json"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", data["date"])
    assert {"cores", "cpu", "python", "torch"} <= set(data["machine"]) and data["machine"]["cores"] >= 1
    assert data["settings"] == {"rounds": 3}  # the arguments, but where the file went
    assert data["numbers"]["vector"] == {"value": 20.0, "unit": "x", "label": "deterministic",
                                         "target": {"op": ">=", "value": 10.0}}  # fmt: skip
    assert data["numbers"]["gpu"]["value"] is None and data["numbers"]["same"]["value"] is True
    assert data["targets"][0] == {"target": "vector env at least 10x", "numbers": ["vector", "seconds"]}
    assert data["targets"][2]["note"] == "no CUDA device"
    assert [results.met(data["numbers"][key]) for key in ("vector", "single", "seconds", "same", "gpu")] == [
        True, False, None, True, None]  # fmt: skip
    assert not list((tmp_path / "out").glob(".*.tmp"))  # written atomically: no temporary file left behind


def test_the_json_writer_refuses_unknown_numbers_and_writes_nothing_without_json(results: ModuleType) -> None:
    record = results.Results("bench_env", argparse.Namespace(json=None), [])
    record.number("a", 1.0, "s", "a")
    with pytest.raises(ValueError, match="twice"):
        record.number("a", 2.0, "s", "a")
    with pytest.raises(ValueError, match="unrecorded"):
        record.target("text", "a", "b")
    with pytest.raises(ValueError, match="comparison"):
        record.number("c", 1.0, "s", "c", ("=>", 1.0))
    assert record.write() is None


def test_the_speed_table_is_computed_from_the_numbers(results: ModuleType, tables: ModuleType, tmp_path: Path):
    source = tmp_path / "runs" / "bench-env.json"
    synthetic(results, source, ["--json", "runs/bench-env.json"])
    tables.take(str(source), "bench-env.json")
    assert (tables.RESULTS / "bench-env.json").read_text() == source.read_text()  # kept whole
    text = tables.speed_table()
    rows = {line.split(" | ")[0].removeprefix("| "): line.split(" | ")[1:] for line in text.splitlines()
            if line.startswith("| ")}  # fmt: skip
    command = "`python benchmarks/bench_env.py --json runs/bench-env.json` |"
    assert rows["vector env at least 10x"] == ["deterministic 20.0x; one round 0.12 s", command]  # met: not bold
    assert rows["single env at parity"] == ["slippery 0.50x **missed**; identical answers yes", command]
    assert rows["tokens/s on CUDA"] == ["**not measured** (no CUDA device)", command]
    assert "**missed**" not in rows["vector env at least 10x"][0]
    machine = json.loads(source.read_text())["machine"]
    assert f"Measured on {machine['cpu']}, {machine['cores']} cores" in text
    # the benchmark without a file has no rows, and the README says it was not run, with its command
    assert text.endswith("Not run this round (no rows above):\n\n- `python benchmarks/bench_lm.py --threads 1 --json "
                         "runs/bench-lm.json`")  # fmt: skip


def test_take_refuses_a_benchmark_file_of_another_command_or_schema(results: ModuleType, tables: ModuleType,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    quick = tmp_path / "quick.json"
    synthetic(results, quick, ["--quick", "--json", "quick.json"])
    with pytest.raises(SystemExit, match="--quick"):
        tables.take(str(quick), "bench-env.json")
    assert not (tables.RESULTS / "bench-env.json").exists()  # nothing kept
    data = json.loads(quick.read_text())
    quick.write_text(json.dumps({**data, "schema": "iftgym.bench/0", "command": tables.BENCHMARKS["bench-env.json"]}))
    with pytest.raises(SystemExit, match="schema"):
        tables.take(str(quick), "bench-env.json")
    assert tables.speed_table().startswith("Not run this round")  # no file, no table


def test_every_benchmark_writes_its_numbers_and_has_a_row_command() -> None:
    """Each benchmarks/bench_*.py takes ``--json`` through the shared helper, and the README's table names its
    command (``--json runs/bench-<name>.json``)."""
    tables = load(ROOT / "docs" / "make_readme_tables.py", "make_readme_tables")
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    assert len(scripts) >= 9
    for script in scripts:
        text = script.read_text()
        name = script.stem.removeprefix("bench_").replace("_", "-")
        assert f'Results("{script.stem}", args' in text and "add_json_option(parser)" in text, script.name
        assert "record.write()" in text and "json.dump(" not in text, script.name
        command = tables.BENCHMARKS[f"bench-{name}.json"]
        assert command.startswith(f"python benchmarks/{script.name} ")
        assert command.endswith(f"--json runs/bench-{name}.json")
