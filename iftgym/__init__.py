"""iftgym: fine-tuning rules for language models on a workbench small enough to solve exactly.

The public API lives here, loaded on first use (``import iftgym`` itself only registers the Gymnasium
environments ``iftgym/FrozenLake-v0`` and ``iftgym/TokenGen-v0``, so the command line starts fast)::

    import iftgym

    world = iftgym.FrozenLakeMDP.from_map("paper")
    policy = iftgym.MLPPolicy(world.n_ids, world.n_actions, seeds=5)
    result = iftgym.train(policy, "sft+ift", world, world.training_data(), iftgym.TrainConfig(steps=300))

The layers, bottom up (``docs/design.md``): core types and the World contract, worlds, policies, rules, the training
loop, metrics, experiments, explanations, the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from iftgym.version import __version__

if "iftgym/FrozenLake-v0" not in registry:
    register(id="iftgym/FrozenLake-v0", entry_point="iftgym.worlds.frozen_lake.env:FrozenLakeEnv",
             vector_entry_point="iftgym.worlds.frozen_lake.vector_env:FrozenLakeVectorEnv")  # fmt: skip
if "iftgym/TokenGen-v0" not in registry:
    register(id="iftgym/TokenGen-v0", entry_point="iftgym.worlds.tokens.env:TokenGenEnv")

# the module that defines each public name
_MODULES = {
    "iftgym.types": ["Trajectory", "PreferencePair", "StepBatch", "PairBatch", "TrainingData"],
    "iftgym.world": ["World", "Actor", "seed_generators"],
    "iftgym.worlds.frozen_lake": [
        "FrozenLakeMDP",
        "FrozenLakeEnv",
        "catalogue",
        "load_map",
        "random_map",
        "validate_map",
    ],
    "iftgym.worlds.tokens": [
        "TokenWorld",
        "TokenGenEnv",
        "CharTokenizer",
        "HFTokenizer",
        "load_tokenizer",
        "Message",
        "Task",
        "Example",
        "make_task",
        "register_task",
    ],
    "iftgym.policies": [
        "Policy",
        "MLPPolicy",
        "TabularPolicy",
        "TinyGPT",
        "HFPolicy",
        "register_policy",
        "save_policy",
        "load_policy",
        "save_model",
        "load_model",
    ],
    "iftgym.rules": ["Rule", "make_rule", "register_rule", "rule_names", "parse_recipe", "rule_spec", "load_rule"],
    "iftgym.loop": ["train", "TrainConfig", "TrainResult", "Stage", "make_stages"],
    "iftgym.metrics.testing": ["assert_estimator_bias", "check_estimator_bias"],
    "iftgym.experiments.compare": ["compare", "CompareConfig"],
    "iftgym.worlds.registry": ["register_world", "make_world", "world_names"],
    "iftgym.experiments.generate": ["generate_text", "GenerateConfig"],
    "iftgym.registry": ["load_plugin"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "Actor", "CharTokenizer", "CompareConfig", "Example", "FrozenLakeEnv", "FrozenLakeMDP", "GenerateConfig",
    "HFPolicy", "HFTokenizer", "MLPPolicy", "Message", "PairBatch", "Policy", "PreferencePair", "Rule",
    "Stage", "StepBatch", "TabularPolicy", "Task", "TinyGPT", "TokenGenEnv", "TokenWorld", "TrainConfig",
    "TrainResult", "TrainingData", "Trajectory", "World", "__version__", "assert_estimator_bias", "catalogue",
    "check_estimator_bias", "compare", "generate_text", "load_map", "load_model", "load_plugin", "load_policy",
    "load_rule", "load_tokenizer", "make_rule", "make_stages", "make_task", "make_world", "parse_recipe",
    "random_map", "register_policy", "register_rule", "register_task", "register_world", "rule_names", "rule_spec",
    "save_model", "save_policy", "seed_generators", "train", "validate_map", "world_names",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'iftgym' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # static analysers see the lazy names
    from iftgym.experiments.compare import CompareConfig, compare
    from iftgym.experiments.generate import GenerateConfig, generate_text
    from iftgym.loop import Stage, TrainConfig, TrainResult, make_stages, train
    from iftgym.metrics.testing import assert_estimator_bias, check_estimator_bias
    from iftgym.policies import (
        HFPolicy,
        MLPPolicy,
        Policy,
        TabularPolicy,
        TinyGPT,
        load_model,
        load_policy,
        register_policy,
        save_model,
        save_policy,
    )
    from iftgym.registry import load_plugin
    from iftgym.rules import Rule, load_rule, make_rule, parse_recipe, register_rule, rule_names, rule_spec
    from iftgym.types import PairBatch, PreferencePair, StepBatch, TrainingData, Trajectory
    from iftgym.world import Actor, World, seed_generators
    from iftgym.worlds.frozen_lake import FrozenLakeEnv, FrozenLakeMDP, catalogue, load_map, random_map, validate_map
    from iftgym.worlds.registry import make_world, register_world, world_names
    from iftgym.worlds.tokens import (
        CharTokenizer,
        Example,
        HFTokenizer,
        Message,
        Task,
        TokenGenEnv,
        TokenWorld,
        load_tokenizer,
        make_task,
        register_task,
    )
