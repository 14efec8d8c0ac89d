"""``iftgym bias``: the identity printed step by step, and unknown names refused in one line."""

from __future__ import annotations

import pytest

from iftgym.cli import main


def test_bias_command_prints_the_identity_step_by_step(capsys, tmp_path):
    png = tmp_path / "map.png"
    assert main(["bias", "--map", "paper", "--algo", "sft", "--steps", "5", "--seed", "3", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    for column in ("step", "state", "action", "teacher-forced", "IFT", "exact", "log-bias", "prefix"):
        assert column in out
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines() if line.startswith("│")]
    rows = [cells for cells in rows if cells[0].isdigit()]
    assert [cells[0] for cells in rows] == ["0", "1", "2", "3", "4", "5"]  # the paper map's 6-step demonstration
    assert all(cells[-1] == cells[-2] for cells in rows)  # log-bias == summed prefix losses, as printed
    assert "summed log-bias" in out and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("args", "match"), [(["--map", "atlantis"], "unknown map"), (["--algo", "sgd"], "unknown")])
def test_bias_command_rejects_unknown_names_in_one_line(capsys, args, match):
    assert main(["bias", *args, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
