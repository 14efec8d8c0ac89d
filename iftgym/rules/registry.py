"""Rule names: the registry every command and API looks rules up in, and the recipe grammar ``a+b+c``.

``make_rule("ift", gamma=0.9)`` builds a rule from its name and config overrides; ``parse_recipe("sft+dpo")``
splits a recipe into rule names, checking each (the training loop turns a recipe into stages, see
:func:`iftgym.loop.make_stages`). A user's rule joins with :func:`register_rule`, or through the entry-point group
``iftgym.rules`` of an installed plugin; from then on its name works wherever a built-in's does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from iftgym.registry import Registry
from iftgym.rules.base import Rule
from iftgym.rules.dpo import DPO, OnlineDPO
from iftgym.rules.ift import IFT
from iftgym.rules.orpo import ORPO
from iftgym.rules.ppo import PPO
from iftgym.rules.reinforce import REINFORCE
from iftgym.rules.sft import SFT
from iftgym.types import DATA_KINDS
from iftgym.validate import like_default


def _check_rule(name: str, rule: object) -> None:
    if not (isinstance(rule, type) and issubclass(rule, Rule)):
        raise ValueError(f"rule {name!r} must be a subclass of iftgym.Rule, got {rule!r}")
    if not dataclasses.is_dataclass(rule.config_class):
        raise ValueError(f"rule {name!r}: config_class {rule.config_class!r} must be a dataclass")
    if isinstance(rule.__dict__.get("data"), str) and rule.data not in DATA_KINDS:
        raise ValueError(f"rule {name!r} trains on data={rule.data!r}: expected one of {', '.join(DATA_KINDS)}")


RULES: Registry[type[Rule]] = Registry("rule", "iftgym.rules", _check_rule)


def register_rule(name: str, rule: type[Rule], *, replace: bool = False) -> type[Rule]:
    """Make a :class:`Rule` subclass available as ``name`` in every command (``iftgym compare --algos NAME``,
    ``iftgym lm --algo NAME``), recipe (``sft+NAME``), table, figure and ``results.json``. Returns ``rule``."""
    return RULES.register(name, rule, replace=replace)


def rule_names() -> list[str]:
    """Every registered rule name, plugins included."""
    return RULES.names()


def config_fields(name: str) -> list[str]:
    """The hyper-parameters a rule accepts (the fields of its config that its name does not fix)."""
    rule = RULES.get(name)
    return [f.name for f in dataclasses.fields(rule.config_class) if f.name not in rule.fixed]


def make_rule(name: str, **overrides: Any) -> Rule:
    """Build one rule by name; ``overrides`` set fields of its config (unknown fields raise ``ValueError``)."""
    rule_cls = RULES.get(name)
    settable = config_fields(name)
    unknown = sorted(k for k in overrides if k not in settable and rule_cls.fixed.get(k, object()) != overrides[k])
    if unknown:
        raise ValueError(f"rule {name!r} has no hyper-parameter {', '.join(unknown)}: accepted: "
                         f"{', '.join(settable) or 'none'}")  # fmt: skip
    defaults = {f.name: f.default for f in dataclasses.fields(rule_cls.config_class)}
    for key, value in overrides.items():
        like_default(f"{name}.{key}", value, defaults[key])
    rule = rule_cls(rule_cls.config_class(**{**overrides, **rule_cls.fixed}))
    rule.name = name
    return rule


def parse_recipe(recipe: str) -> list[str]:
    """The rule names of a recipe: ``"sft+dpo"`` -> ``["sft", "dpo"]``, each one registered."""
    names = [part.strip() for part in recipe.split("+")]
    if not recipe.strip() or not all(names):
        raise ValueError(f"recipe {recipe!r} is malformed: expected rule names joined by '+', e.g. sft+dpo")
    for name in names:
        if name not in RULES:
            where = f" in algorithm {recipe!r}" if len(names) > 1 else ""
            raise ValueError(f"unknown rule {name!r}{where}: expected one of {', '.join(rule_names())}, or several "
                             "joined by '+' (e.g. sft+dpo)")  # fmt: skip
    return names


def rule_spec(rule: Rule) -> dict[str, Any]:
    """A JSON-ready description of a configured rule, ``{"name": ..., "config": {...}}``; :func:`load_rule`
    rebuilds it."""
    return {"name": rule.name, "config": dataclasses.asdict(rule.config)}


def load_rule(spec: dict[str, Any]) -> Rule:
    """The rule described by :func:`rule_spec`'s output."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"rule spec {spec!r} is malformed: expected {{'name': str, 'config': {{...}}}}")
    return make_rule(spec["name"], **spec.get("config", {}))


BUILT_IN: dict[str, type[Rule]] = {"sft": SFT, "dpo": DPO, "dpo-online": OnlineDPO, "orpo": ORPO, "ppo": PPO,
                                   "reinforce": REINFORCE, "ift": IFT}  # fmt: skip
for _name, _rule in BUILT_IN.items():
    register_rule(_name, _rule)


def is_built_in(name: str) -> bool:
    """Whether ``name`` is one of iftgym's own rules, not replaced: a fresh process (a worker) finds the same rule
    under it without the caller's registrations."""
    return name in BUILT_IN and RULES.get(name) is BUILT_IN[name]
