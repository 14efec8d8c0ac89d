"""Settings declared once: a config dataclass field carries its help text, bounds, choices and the world it belongs
to, and everything else is generated from it — the command line's flags and their ``--help``
(:func:`iftgym.cli.common.add_settings`), the sweep axes, and the checks (:func:`check_settings`).

    steps: int = setting(300, "optimiser steps per algorithm", low=1, high=MAX_STEPS)

``setting(default, help, ...)`` is a :func:`dataclasses.field` with that metadata; ``check_settings(config)`` runs in
the config's ``__post_init__`` and checks every field by its metadata and type (TRL's configs declare their
arguments the same way).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Collection, Mapping
from typing import Any

from iftgym.validate import at_least, between, one_of


def setting(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    include_low: bool = True,
    include_high: bool = True,
    choices: Collection[Any] | None = None,
    world: str | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    cli: bool = True,
) -> Any:
    """A config field with its ``help``, bounds (``low``/``high``, each end included or not), ``choices``, the
    ``world`` it is a setting of (``None``: every world), its command-line ``flag`` (default ``--field-name``; ``cli``
    False: none) and ``metavar``. A mutable default (a list or dict) is copied for each config."""
    metadata = {"help": help, "low": low, "high": high, "include_low": include_low, "include_high": include_high,
                "choices": choices, "world": world, "flag": flag, "metavar": metavar, "cli": cli}  # fmt: skip
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(field: dataclasses.Field) -> str:
    """The command-line flag of a setting: its ``flag``, else ``--`` and its name with dashes."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def default_of(field: dataclasses.Field) -> Any:
    """A field's default value (a fresh one where the field has a default factory)."""
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def settings_of(cls: type) -> list[dataclasses.Field]:
    """The fields of a config class declared with :func:`setting`."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def field_type(cls: type, field: dataclasses.Field) -> Any:
    """A field's annotation, resolved (``from __future__ import annotations`` leaves strings)."""
    return typing.get_type_hints(cls)[field.name]


def base_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; ``list[str]`` -> ``list``; ``int`` -> ``int``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (list, dict, tuple):
        return origin
    if args and origin is not None:
        return base_type(args[0])
    return annotation


def check_settings(config: Any, skip: Collection[str] = ()) -> None:
    """Check every :func:`setting` of ``config`` (but ``skip``) by its type and metadata: integers are integers, numbers
    finite, booleans booleans, values in their bounds and choices; ``None`` passes where the type allows it. Raises
    ``ValueError`` naming the field, its value and what is accepted."""
    cls = type(config)
    for field in settings_of(cls):
        if field.name in skip:
            continue
        value, meta = getattr(config, field.name), field.metadata
        annotation = field_type(cls, field)
        if value is None and type(None) in typing.get_args(annotation):
            continue
        kind = base_type(annotation)
        low, high = meta["low"], meta["high"]
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{field.name}={value!r} is {type(value).__name__}: expected true or false")
        elif kind is int:
            at_least(field.name, value, -(2**63) if low is None else math.ceil(low), high=high)
        elif kind is float:
            between(field.name, value, -math.inf if low is None else low, math.inf if high is None else high,
                    include_low=meta["include_low"], include_high=meta["include_high"])  # fmt: skip
            if not math.isfinite(value):
                raise ValueError(f"{field.name}={value} is out of range: expected a finite number")
        elif kind is str and not isinstance(value, str):
            raise ValueError(f"{field.name}={value!r} is {type(value).__name__}: expected text")
        elif kind in (list, tuple) and (isinstance(value, str) or not isinstance(value, (list, tuple))):
            raise ValueError(f"{field.name}={value!r} is {type(value).__name__}: expected a list")
        elif kind is dict and not isinstance(value, Mapping):
            raise ValueError(f"{field.name}={value!r} is {type(value).__name__}: expected a mapping")
        if meta["choices"] is not None and kind is not list:
            one_of(field.name, value, meta["choices"])
