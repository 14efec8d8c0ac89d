"""The pages ``iftgym explore`` serves: their settings are checked before anything heavy loads, and each page
builds its explorers, wired to follow each other."""

from __future__ import annotations

import subprocess
import sys

import pytest

from iftgym.interactive import pages


def test_settings_are_checked_with_the_page_s_defaults_and_ranges() -> None:
    assert pages.check_page("frozen-lake", seeds=None, steps=None) == {"seeds": 20, "steps": 300}
    assert pages.check_page("tiny-lm", seeds=1, steps=None) == {"seeds": 1, "steps": 1000}
    for name, settings, message in [
        ("maze", {}, "unknown explorer 'maze': expected one of frozen-lake, tiny-lm, bias"),
        ("bias", {"seeds": 1}, "seeds=1 is out of range for the bias explorer: expected an integer 2 <= seeds <= 50"),
        ("tiny-lm", {"steps": 2.5}, "steps=2.5 is out of range"),
        ("frozen-lake", {"steps": True}, "steps=True is out of range"),
    ]:
        with pytest.raises(ValueError, match=message):
            pages.check_page(name, **settings)


def test_the_tiny_lm_page_s_defaults_are_the_explorer_s() -> None:
    from iftgym.interactive import lm

    assert pages.check_page("tiny-lm", seeds=None, steps=None) == {"seeds": lm.SEEDS, "steps": lm.STEPS}


def test_the_page_names_load_without_widgets_or_torch() -> None:
    code = "import sys, iftgym.interactive.pages; print([m for m in ('ipywidgets', 'torch') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_the_bias_page_follows_its_map_editor() -> None:
    widget = pages.page("bias", seeds=2, steps=10, workers=0)
    explorer, bias = pages.built["bias"]["explorer"], pages.built["bias"]["bias"]
    assert set(explorer.runs) == {"sft"} and len(widget.children) == 3  # the editor, a heading, the bias explorer
    shown = {name for name, control in explorer.controls.items() if control.layout.display != "none"}
    assert {"map", "lam", "lr", "steps", "seeds", "policy"} <= shown and not shown & {"algos", "gamma", "beta"}
    explorer.cycle(1)  # a hole beside the start
    assert bias.model is explorer.model and bias.model.desc[0][1] == "H"


def test_the_frozen_lake_page_s_update_panel_costs_nothing_until_opened() -> None:
    widget = pages.page("frozen-lake", seeds=2, steps=20, workers=0)
    explorer, update = pages.built["frozen-lake"]["explorer"], pages.built["frozen-lake"]["update"]
    panel = widget.children[-1]
    assert panel.titles == (pages.UPDATE_TITLE,) and panel.selected_index is None
    assert not update.active and not explorer.update_rules and not explorer.runs["ift"].fields
    panel.selected_index = 0  # opened: IFT's fields are recorded from now on and shown
    assert update.active and explorer.update_rules == {"ift"} and sorted(update.run.fields) == [0, 10, 20]
    assert update.images["map"][:8] == b"\x89PNG\r\n\x1a\n"
    explorer.controls["lam"].value = 0.5  # a retrain records them in the explorer's own run
    assert update.run is explorer.runs["ift"] and explorer.runs["ift"].fields
