"""Rule names: the registry every command and API looks rules up in, and the recipe grammar ``a+b+c``.

``make_rule("ift", gamma=0.9)`` builds a rule from its name and config overrides; ``parse_recipe("sft+dpo")``
splits a recipe into rule names, checking each (the training loop turns a recipe into stages, see
:func:`iftgym.loop.make_stages`). A user's rule joins with :func:`register_rule`, or through the entry-point group
``iftgym.rules`` of an installed plugin; from then on its name works wherever a built-in's does.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from iftgym.registry import Registry
from iftgym.rules.asft import ASFT
from iftgym.rules.base import Rule
from iftgym.rules.chord import CHORD
from iftgym.rules.dft import DFT
from iftgym.rules.dpo import DPO, OnlineDPO
from iftgym.rules.eaft import EAFT
from iftgym.rules.grpo import GRPO
from iftgym.rules.ift import IFT
from iftgym.rules.iw_sft import IWSFT
from iftgym.rules.orpo import ORPO
from iftgym.rules.ppo import PPO
from iftgym.rules.psft import PSFT
from iftgym.rules.reinforce import REINFORCE
from iftgym.rules.rloo import RLOO
from iftgym.rules.sft import SFT
from iftgym.types import DATA_KINDS
from iftgym.validate import MAX_SETTING, like_default


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
    """Build one rule by name; ``overrides`` set fields of its config (unknown fields raise ``ValueError``).

    ``name`` may be a variant, ``"ift(lam=0, gamma=0.9)"``: the rule with those settings (they take precedence
    over ``overrides``), named by the variant text in every table, figure and ``results.json``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name={name!r} is {type(name).__name__}: expected a rule name such as 'ift' or a variant "
                        "such as 'ift(lam=0)'")  # fmt: skip
    base, settings = parse_variant(name)
    overrides = {**overrides, **settings}
    rule_cls = RULES.get(base)
    settable = config_fields(base)
    unknown = sorted(k for k in overrides if k not in settable and rule_cls.fixed.get(k, object()) != overrides[k])
    if unknown:
        raise ValueError(f"rule {base!r} has no hyper-parameter {', '.join(unknown)}: accepted: "
                         f"{', '.join(settable) or 'none'}")  # fmt: skip
    defaults = {f.name: f.default for f in dataclasses.fields(rule_cls.config_class)}
    for key, value in overrides.items():
        like_default(f"{base}.{key}", value, defaults[key], high=MAX_SETTING)
    rule = rule_cls(rule_cls.config_class(**{**overrides, **rule_cls.fixed}))
    rule.name = name.strip() if settings else base
    return rule


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """A rule name or variant -> its base rule and settings: ``"ift(lam=0, detach_weights=true)"`` ->
    ``("ift", {"lam": 0, "detach_weights": True})``. Values are read as JSON where they can be (numbers,
    ``true``/``false``, quoted strings), else kept as text; the base rule must be registered."""
    text = text.strip()
    base, paren, rest = text.partition("(")
    base = base.strip()
    if paren and not rest.endswith(")"):
        raise ValueError(f"variant {text!r} is malformed: expected RULE(PARAM=VALUE, ...), e.g. ift(lam=0)")
    if base not in RULES:
        raise _unknown(base)
    settings: dict[str, Any] = {}
    for item in split_outside_parentheses(rest[:-1], ",") if paren else []:
        key, eq, raw = (part.strip() for part in item.partition("="))
        if not eq or not key.isidentifier() or not raw:
            raise ValueError(f"variant {text!r} is malformed at {item.strip()!r}: expected PARAM=VALUE, e.g. lam=0")
        if key in settings:
            raise ValueError(f"variant {text!r} sets {key} twice")
        try:
            settings[key] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key] = raw
    return base, settings


def base_name(name: str) -> str:
    """The registered rule a name or variant stands for: ``"ift(lam=0)"`` -> ``"ift"``."""
    return name.partition("(")[0].strip()


def recipe_rules(recipe: str) -> set[str]:
    """The base rules a recipe trains: ``"sft+ift(gamma=1e+0)"`` -> ``{"sft", "ift"}`` (split outside parentheses,
    so a variant's value may hold ``+``)."""
    return {base_name(name) for name in split_outside_parentheses(recipe, "+")}


def split_outside_parentheses(text: str, separator: str) -> list[str]:
    """``text`` split at each ``separator`` that is not inside parentheses: ``"sft,ift(lam=0,gamma=0)"`` ->
    ``["sft", "ift(lam=0,gamma=0)"]``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def parse_recipe(recipe: str) -> list[str]:
    """The rules of a recipe, each a name or a variant: ``"sft+ift(lam=0)"`` -> ``["sft", "ift(lam=0)"]``, each
    one checked (a registered base rule, well-formed settings)."""
    names = [part.strip() for part in split_outside_parentheses(recipe, "+")]
    if not recipe.strip() or not all(names):
        raise ValueError(f"recipe {recipe!r} is malformed: expected rule names joined by '+', e.g. sft+dpo")
    for name in names:
        if base_name(name) not in RULES:
            raise _unknown(base_name(name), f" in algorithm {recipe!r}" if len(names) > 1 else "")
        parse_variant(name)
    return names


def _unknown(name: str, where: str = "") -> ValueError:
    return ValueError(f"unknown rule {name!r}{where}: expected one of {', '.join(rule_names())}, a variant such as "
                      "ift(lam=0), or several joined by '+' (e.g. sft+dpo)")  # fmt: skip


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
                                   "reinforce": REINFORCE, "ift": IFT, "dft": DFT, "grpo": GRPO,
                                   "rloo": RLOO, "asft": ASFT, "eaft": EAFT, "iw-sft": IWSFT,
                                   "psft": PSFT, "chord": CHORD}  # fmt: skip
for _name, _rule in BUILT_IN.items():
    register_rule(_name, _rule)


def is_built_in(name: str) -> bool:
    """Whether ``name`` (or variant) is one of iftgym's own rules, not replaced: a fresh process (a worker) finds
    the same rule under it without the caller's registrations."""
    base = base_name(name)
    return base in BUILT_IN and RULES.get(base) is BUILT_IN[base]
