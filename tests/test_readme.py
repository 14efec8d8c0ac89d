"""The README's examples run as written: the custom-rule file and its command, and the estimator-bias tests."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from iftgym.cli import main
from iftgym.rules import RULES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def block_after(marker: str, language: str) -> str:
    """The fenced code block that follows ``<!-- marker -->`` in the README."""
    match = re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)\n```", README, re.S)
    assert match, f"README has no {language} block after <!-- {marker} -->"
    return match.group(1)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    RULES.unregister("unlikelihood")


def test_the_custom_rule_example_runs_as_written(in_tmp: Path) -> None:
    rule_file = block_after("custom-rule", "python")
    assert len(rule_file.splitlines()) + 1 < 30  # the whole example, file and command, in under 30 lines
    (in_tmp / "my_rule.py").write_text(rule_file + "\n")
    command = shlex.split(block_after("custom-rule-command", "bash"))
    assert command[0] == "iftgym"
    assert main(command[1:]) == 0
    out = in_tmp / command[command.index("--out") + 1]
    entry = json.loads((out / "results.json").read_text())["maps"][0]["algorithms"]
    assert set(entry) == {"sft", "ift", "dpo", "unlikelihood"}
    assert entry["unlikelihood"]["stages"][0] == {"name": "unlikelihood", "config": {"alpha": 0.5}, "steps": 300,
                                                  "lr": None}  # fmt: skip
    summary = entry["unlikelihood"]["summary"]
    assert f"{summary['mse']['mean']:.3f}" == "0.329" and summary["success"]["mean"] > 0.999  # as the README says
    assert {"paper-preference.png", "paper-values.png", "paper-explored.png", "paper-curves.png"} <= {
        p.name for p in out.iterdir()
    }


def test_the_hugging_face_walk_through_names_real_files_and_valid_commands() -> None:
    """Every command of the walk-through parses as written (its runs are quoted in the README; training them here
    would take minutes) and every file it names is in the repository."""
    from iftgym.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    lines = block_after("hf-walkthrough", "bash").splitlines()
    assert [shlex.split(line)[0] for line in lines] == ["python", "iftgym", "iftgym", "iftgym", "torchrun"]
    assert (root / shlex.split(lines[0])[1]).is_file()
    for line in lines[1:]:
        words = shlex.split(line)
        args = words[words.index("iftgym") + 1 :] if words[0] == "torchrun" else words[1:]
        parsed = build_parser().parse_args(args)
        for name in ("model_config",):
            if getattr(parsed, name, None):
                assert (root / getattr(parsed, name)).is_file()
    torchrun = shlex.split(lines[-1])
    assert "--nproc_per_node=2" in torchrun and shlex.split(lines[1])[1:] == [  # the same training, two processes
        word.replace("chat-ddp", "chat") for word in torchrun[torchrun.index("iftgym") + 1 :]]  # fmt: skip


@pytest.fixture
def world_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from iftgym.worlds.registry import WORLDS

    monkeypatch.chdir(tmp_path)
    yield tmp_path
    WORLDS.unregister("corridor")


def test_the_own_world_recipe_runs_as_written(world_in_tmp: Path) -> None:
    """A world written from docs/design.md alone runs through compare and sweep with the built-in rules it lists, with
    reference rows, paired statistics and figures — the README's commands, exactly as written."""
    (world_in_tmp / "my_world.py").write_text(block_after("own-world", "python") + "\n")
    command = shlex.split(block_after("own-world-command", "bash"))
    assert command[:2] == ["iftgym", "compare"] and main(command[1:]) == 0
    out = world_in_tmp / command[command.index("--out") + 1]
    results = json.loads((out / "results.json").read_text())
    entry = results["maps"][0]
    assert results["world"] == "corridor" and list(entry["references"]) == ["uniform", "untrained"]
    from iftgym.rules.registry import BUILT_IN

    algos = command[command.index("--algos") + 1].split(",")
    assert set(entry["algorithms"]) == set(algos) and set(algos) <= set(BUILT_IN)  # the built-in rules it lists
    assert all("per_seed" in run for run in entry["algorithms"].values())
    assert entry["metrics"]["moves"]["lower_is_better"] and not entry["metrics"]["success"]["lower_is_better"]
    assert set(entry["paired"]["rows"]["ift"]) == {"success", "moves"}
    assert entry["algorithms"]["sft"]["summary"]["success"]["mean"] > 0.99  # the demonstration reaches the goal
    assert {"curves.png", "results.json"} <= {p.name for p in out.iterdir()}
    (world_in_tmp / "sweep.toml").write_text(block_after("own-world-sweep", "toml") + "\n")
    sweep = shlex.split(block_after("own-world-sweep-command", "bash"))
    assert sweep[:2] == ["iftgym", "sweep"] and main(sweep[1:]) == 0
    cells = list((world_in_tmp / sweep[sweep.index("--out") + 1] / "cells").glob("*.json"))
    assert len(cells) == 4 and all("results" in json.loads(cell.read_text()) for cell in cells)


def test_the_readme_tables_are_what_the_results_files_give() -> None:
    """Every generated table equals what ``docs/make_readme_tables.py`` renders from the committed results files,
    every table it knows is in the README, and each results file's command is printed there (a benchmark's file may
    be absent: the Speed table then names its command among those not run this round)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "docs" / "make_readme_tables.py"
    spec = importlib.util.spec_from_file_location("make_readme_tables", path)
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    assert tables.render(README) == README, "run python docs/make_readme_tables.py"
    assert {m.group("name") for m in tables.BLOCK.finditer(README)} == set(tables.TABLES)
    for name, command in tables.COMMANDS.items():
        assert ((tables.RESULTS / name).is_file() or name in tables.BENCHMARKS) and command in README, command
