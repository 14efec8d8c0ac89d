"""The explorer notebooks run headless from top to bottom with small settings and are committed clean."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("name", "cells"), [("explore_frozen_lake.ipynb", 3), ("explore_tiny_lm.ipynb", 1)])
def test_explorer_notebook_executes(name: str, cells: int, execute) -> None:
    outputs = execute(name)
    views = [out for out in outputs if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    assert len(views) == cells  # every code cell shows its explorer
