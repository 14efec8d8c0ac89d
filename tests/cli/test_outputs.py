"""Commands write only inside their output folders and never remove what they read: every sub-command that reads
from the folder it writes to keeps its input, and names made from user text (rules, variants, maps) stay inside
their folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from iftgym.cli import main
from iftgym.io import MANIFEST, inside, safe_name
from iftgym.rules.registry import RULES

TINY_COMPARE = ["--seeds", "2", "--steps", "2"]
TINY_LM = ["--steps", "2", "--seeds", "1", "--train-size", "4", "--test-size", "2", "--task-arg", "digits=1",
           "--batch-size", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "8"]  # fmt: skip


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_plot_keeps_the_results_file_it_redraws(tmp_path: Path) -> None:
    out = tmp_path / "compare"
    assert main(["compare", *TINY_COMPARE, "--algos", "sft", "--out", str(out)]) == 0
    results = out / "results.json"
    written = results.read_bytes()
    for args in (["plot", str(results)], ["plot", str(results), "--out", str(out)], ["plot", str(results)]):
        assert main(args) == 0, args
        assert results.read_bytes() == written  # the file plot read is still there, untouched
    assert "results.json" in json.loads((out / MANIFEST).read_text())["files"]
    # a later comparison in the same folder still replaces it as one of its own outputs
    assert main(["compare", *TINY_COMPARE, "--algos", "ift", "--out", str(out)]) == 0
    assert "ift" in json.loads(results.read_text())["maps"][0]["algorithms"]


def test_plot_into_another_folder_leaves_the_results_folder_alone(tmp_path: Path) -> None:
    out = tmp_path / "compare"
    assert main(["compare", *TINY_COMPARE, "--algos", "sft", "--out", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in files_under(out) if (out / name).is_file()}
    assert main(["plot", str(out / "results.json"), "--out", str(tmp_path / "figures")]) == 0
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not (tmp_path / "figures" / "results.json").exists()


@pytest.mark.parametrize("command", ["compare", "lm"])
def test_an_input_listed_as_a_previous_output_is_kept(tmp_path: Path, command: str) -> None:
    """A file the run reads (a map, a data file) that a previous run's manifest names is not removed with that run's
    outputs."""
    out = tmp_path / "out"
    out.mkdir()
    if command == "compare":
        source = out / "corridor.txt"
        source.write_text("SFFFG\n")
        args = ["compare", *TINY_COMPARE, "--algos", "sft", "--map", str(source)]
    else:
        source = out / "data.jsonl"
        source.write_text("".join(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n"
                                  for i in range(4)))  # fmt: skip
        args = ["lm", "--steps", "2", "--seeds", "1", "--batch-size", "2", "--n-layer", "1", "--n-head", "2",
                "--n-embd", "8", "--algo", "sft", "--data", str(source)]  # fmt: skip
    (out / MANIFEST).write_text(json.dumps({"files": [source.name, "old.png"]}))
    (out / "old.png").write_bytes(b"old")
    content = source.read_bytes()
    assert main([*args, "--out", str(out)]) == 0
    assert source.read_bytes() == content
    assert not (out / "old.png").exists()  # a previous output the run did not read is replaced as before


@pytest.fixture
def path_rule():
    """A plugin rule whose setting is a path: its variant's text holds ``/`` and ``..``."""
    from dataclasses import dataclass

    from iftgym.rules.sft import SFT, SFTConfig

    @dataclass
    class PathConfig(SFTConfig):
        path: str = ""

    class PathSFT(SFT):
        config_class = PathConfig

    RULES.register("pathrule", PathSFT)
    yield 'pathrule(path="/../../../../escaped")'
    RULES.unregister("pathrule")


def test_hostile_variant_names_write_only_inside_out_and_save(tmp_path: Path, path_rule: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out, save = work / "out", work / "save"
    before = files_under(tmp_path)
    cwd = os.getcwd()
    os.chdir(work)  # a relative escape would land here or above
    try:
        assert main(["compare", *TINY_COMPARE, "--algos", f"sft,{path_rule}", "--out", str(out)]) == 0
        assert main(["lm", *TINY_LM, "--algo", path_rule, "--out", str(out / "lm"), "--save", str(save)]) == 0
    finally:
        os.chdir(cwd)
    new = files_under(tmp_path) - before
    assert new and all(name.startswith(("work/out", "work/save")) for name in new), sorted(new)
    assert [p.name for p in save.iterdir()] == ["pathrule-path-escaped"]
    assert (out / "lm" / "strips_pathrule-path-escaped.png").is_file()


@pytest.mark.parametrize(
    "text",
    ["../../etc/passwd", "/abs/path", "..", ".", "", ".hidden", "a\nb\x00c", "ift(lam=0)", "sft+dpo", "x" * 500,
     "C:\\Windows\\x", "ü/../ö"],
)  # fmt: skip
def test_safe_name_stays_inside_its_folder(tmp_path: Path, text: str) -> None:
    name = safe_name(text)
    assert name and len(name) <= 80 and not name.startswith(".")
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert inside(tmp_path, text).resolve().parent == tmp_path.resolve()


def test_safe_name_keeps_names_apart() -> None:
    assert safe_name("ift(lam=0)") == "ift-lam-0"
    assert safe_name("sft+dpo") == "sft-dpo"
    assert safe_name("a", {"a", "a-2"}) == "a-3"
    assert safe_name("x" * 200 + "1") != safe_name("x" * 200 + "2")
