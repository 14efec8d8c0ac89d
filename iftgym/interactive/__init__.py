"""Interactive explorers for notebooks (ipywidgets, the ``notebooks`` extra): Frozen Lake with a map editor and
live retraining, an episode player, an estimator-bias explorer, and a tiny-LM explorer."""

from iftgym.interactive.frozen_lake import BiasExplorer, EpisodePlayer, FrozenLakeExplorer
from iftgym.interactive.lm import TinyLMExplorer

__all__ = ["BiasExplorer", "EpisodePlayer", "FrozenLakeExplorer", "TinyLMExplorer"]
