"""Policy-update rules, one per file, and the names they go by.

``make_rule("ift", gamma=0.9)`` builds a rule from its name and config overrides; a recipe such as
``"sft+dpo"`` is a list of rules trained one after the other (see :func:`iftgym.train.train`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from iftgym.rules.base import Rule
from iftgym.rules.dpo import DPO, DPOConfig
from iftgym.rules.ift import IFT, IFTConfig
from iftgym.rules.orpo import ORPO, ORPOConfig
from iftgym.rules.ppo import PPO, PPOConfig
from iftgym.rules.reinforce import REINFORCE, REINFORCEConfig
from iftgym.rules.sft import SFT, SFTConfig
from iftgym.validate import like_default

# name -> (rule class, config class, fixed config values)
RULES: dict[str, tuple[type[Rule], type, dict[str, Any]]] = {
    "sft": (SFT, SFTConfig, {}),
    "dpo": (DPO, DPOConfig, {"online": False}),
    "dpo-online": (DPO, DPOConfig, {"online": True}),
    "orpo": (ORPO, ORPOConfig, {}),
    "ppo": (PPO, PPOConfig, {}),
    "reinforce": (REINFORCE, REINFORCEConfig, {}),
    "ift": (IFT, IFTConfig, {}),
}
RECIPES = ("sft+dpo", "sft+orpo", "sft+ift")


def rule_names() -> list[str]:
    """Every accepted rule name, recipes included."""
    return [*RULES, *RECIPES]


def config_fields(name: str) -> list[str]:
    """The hyper-parameters a rule accepts."""
    return [f.name for f in dataclasses.fields(RULES[name][1]) if f.name not in RULES[name][2]]


def make_rule(name: str, **overrides: Any) -> Rule:
    """Build one rule by name; ``overrides`` set fields of its config (unknown fields raise ``ValueError``)."""
    if name not in RULES:
        raise ValueError(
            f"unknown rule {name!r}: expected one of {', '.join(RULES)} (or a recipe: {', '.join(RECIPES)})"
        )
    rule_cls, config_cls, fixed = RULES[name]
    unknown = sorted(set(overrides) - set(config_fields(name)))
    if unknown:
        accepted = ", ".join(config_fields(name)) or "none"
        raise ValueError(f"rule {name!r} has no hyper-parameter {', '.join(unknown)}: accepted: {accepted}")
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    for key, value in overrides.items():
        like_default(f"{name}.{key}", value, defaults[key])
    return rule_cls(config_cls(**{**overrides, **fixed}))


def make_recipe(name: str, overrides: dict[str, dict[str, Any]] | None = None) -> list[Rule]:
    """The rules of a rule name or recipe (``"sft+dpo"``), each with its own overrides by rule name."""
    overrides = overrides or {}
    if name not in RULES and name not in RECIPES:
        raise ValueError(f"unknown algorithm {name!r}: expected one of {', '.join(rule_names())}")
    return [make_rule(part, **overrides.get(part, {})) for part in name.split("+")]


__all__ = [
    "DPO", "IFT", "ORPO", "PPO", "RECIPES", "REINFORCE", "RULES", "SFT",
    "DPOConfig", "IFTConfig", "ORPOConfig", "PPOConfig", "REINFORCEConfig", "Rule", "SFTConfig",
    "make_recipe", "make_rule", "rule_names",
]  # fmt: skip
