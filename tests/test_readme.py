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
