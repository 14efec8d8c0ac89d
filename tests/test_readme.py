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
