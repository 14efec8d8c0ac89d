"""Interactive explorers for notebooks and web pages (ipywidgets, the ``notebooks`` extra): Frozen Lake with a map
editor and live retraining, an episode player, an estimator-bias explorer, an update view (why a rule moves each cell),
and a tiny-LM explorer; ``pages`` lays
them out as the pages ``iftgym explore`` serves.

The explorers are imported on first use (``from iftgym.interactive import FrozenLakeExplorer``), so that
``iftgym.interactive.pages``'s names and limits load without ipywidgets or torch."""

from __future__ import annotations

from typing import Any

__all__ = ["BiasExplorer", "EpisodePlayer", "FrozenLakeExplorer", "TinyLMExplorer", "UpdateExplorer"]

_WHERE = {"BiasExplorer": "frozen_lake", "EpisodePlayer": "frozen_lake", "FrozenLakeExplorer": "frozen_lake",
          "TinyLMExplorer": "lm", "UpdateExplorer": "frozen_lake"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
