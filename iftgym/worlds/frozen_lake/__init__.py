"""Frozen Lake: the map catalogue, the exact model (the World) and the Gymnasium environments (single and vector)."""

from iftgym.worlds.frozen_lake.env import FrozenLakeEnv
from iftgym.worlds.frozen_lake.maps import catalogue, load_map, random_map, validate_map
from iftgym.worlds.frozen_lake.model import ACTION_ARROWS, ACTION_NAMES, FrozenLakeMDP
from iftgym.worlds.frozen_lake.vector_env import FrozenLakeVectorEnv

__all__ = ["ACTION_ARROWS", "ACTION_NAMES", "FrozenLakeEnv", "FrozenLakeMDP", "FrozenLakeVectorEnv", "catalogue",
           "load_map", "random_map", "validate_map"]  # fmt: skip
