"""The comparison's figures as the explorers draw them: a map figure a process keeps and refills with another step's
numbers draws the same picture, byte for byte, as a new one filled with them; a process keeps a bounded number."""

from __future__ import annotations

import pytest

from iftgym.experiments.compare import CompareConfig, compare
from iftgym.explain import figures
from iftgym.explain.canvas import figure_png
from iftgym.worlds.frozen_lake.maps import load_map
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

NEW = {"preference": lambda entry, model: figures.preference_maps(entry, model),
       "values": lambda entry, model: figures.value_maps(entry, model, model.gamma),
       "explored": lambda entry, model: figures.explored_maps(entry, model, model.gamma),
       "curves": lambda entry, model: figures.training_curves(entry)}  # fmt: skip


@pytest.fixture(scope="module")
def entries():
    """Two comparisons of the same rules on the paper map, after 3 and after 30 steps."""
    runs = [compare(CompareConfig(algos=["sft", "dpo"], seeds=2, steps=steps, eval_every=3), workers=0).maps[0]
            for steps in (3, 30)]  # fmt: skip
    return runs, FrozenLakeMDP.from_map(list(load_map("paper")))


@pytest.mark.parametrize("kind", list(NEW))
def test_a_refilled_figure_draws_what_a_new_one_draws(entries, kind: str, monkeypatch) -> None:
    (early, late), model = entries
    monkeypatch.setattr(figures, "_kept", {})
    figures.map_figure_png(kind, late, model)  # drawn and kept
    refilled = figures.map_figure_png(kind, early, model)
    (key,) = figures._kept
    fig, fill, crop = figures._kept[key]
    assert (fig is None) == (kind == "curves") and (fill is None) == (kind == "curves")  # the curves drawn anew
    assert refilled == figure_png(NEW[kind](early, model), crop=crop)
    assert refilled != figures.map_figure_png(kind, late, model)  # and the other step's numbers show


def test_a_process_keeps_a_bounded_number_of_figures(entries, monkeypatch) -> None:
    (early, _), model = entries
    monkeypatch.setattr(figures, "_kept", {})
    monkeypatch.setattr(figures, "KEPT_FIGURES", 2)
    for kind in ("preference", "values", "explored"):
        figures.map_figure_png(kind, early, model)
    assert [key[0] for key in figures._kept] == ["values", "explored"]  # the oldest went first
    with pytest.raises(ValueError, match="kind='maps' is not supported: expected one of 'preference'"):
        figures.map_figure_png("maps", early, model)
