"""iftgym: fine-tuning rules for language models on a workbench small enough to solve exactly."""

from importlib.metadata import PackageNotFoundError, version

from gymnasium.envs.registration import register, registry

from iftgym.frozen_lake import FrozenLakeMDP
from iftgym.maps import catalogue, load_map, random_map, validate_map
from iftgym.mdp import MDP, PairBatch, PreferencePair, StepBatch, Trajectory

try:
    __version__ = version("iftgym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

if "iftgym/FrozenLake-v0" not in registry:
    register(id="iftgym/FrozenLake-v0", entry_point="iftgym.frozen_lake_env:FrozenLakeEnv")
if "iftgym/TokenGen-v0" not in registry:
    register(id="iftgym/TokenGen-v0", entry_point="iftgym.token_env:TokenGenEnv")

__all__ = [
    "MDP",
    "FrozenLakeMDP",
    "PairBatch",
    "PreferencePair",
    "StepBatch",
    "Trajectory",
    "catalogue",
    "load_map",
    "random_map",
    "validate_map",
]
