"""Frozen Lake: the map catalogue, the exact model (the World) and the Gymnasium environment."""

from iftgym.worlds.frozen_lake.env import FrozenLakeEnv
from iftgym.worlds.frozen_lake.maps import catalogue, load_map, random_map, validate_map
from iftgym.worlds.frozen_lake.model import ACTION_ARROWS, ACTION_NAMES, FrozenLakeMDP

__all__ = ["ACTION_ARROWS", "ACTION_NAMES", "FrozenLakeEnv", "FrozenLakeMDP", "catalogue", "load_map", "random_map",
           "validate_map"]  # fmt: skip
