"""explain.tables: console tables render what experiments return."""

from __future__ import annotations

from rich.console import Console

from iftgym.experiments.compare import CompareConfig, compare
from iftgym.explain.tables import catalogue_table, compare_table, draw_map, format_interval
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP


def render(renderable) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_compare_table_shows_every_algorithm_and_skips(tmp_path) -> None:
    (tmp_path / "line.txt").write_text("SFFG\n")  # a single route: no preference pairs for DPO
    results = compare(CompareConfig(maps=[str(tmp_path / "line.txt")], algos=["sft", "dpo"], seeds=2, steps=2))
    text = render(compare_table(results.maps[0]))
    assert "sft" in text and "skipped: map has no sub-optimal route" in text and "MSE to optimal" in text


def test_intervals_are_symmetric_unless_clipped() -> None:
    assert format_interval({"mean": 0.5, "ci95_low": 0.4, "ci95_high": 0.6}) == "0.500 ± 0.100"
    assert format_interval({"mean": 0.95, "ci95_low": 0.85, "ci95_high": 1.0}) == "0.950 [0.850, 1.000]"


def test_maps_are_drawn_with_values_and_arrows() -> None:
    model = FrozenLakeMDP.from_map(["SFG"])
    values, _, policy = model.value_iteration()
    assert render(draw_map(model)).split() == ["S", "F", "G"]
    assert "→" in render(draw_map(model, values, policy)) and "paper" in render(catalogue_table())
