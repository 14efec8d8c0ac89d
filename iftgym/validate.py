"""Argument checks shared by every config and constructor: each raises a ``ValueError`` that names the parameter,
its value and what is accepted, e.g. ``gamma=1.5 is out of range: expected 0 <= gamma <= 1``."""

from __future__ import annotations

import numbers
from collections.abc import Collection

import numpy as np


def at_least(name: str, value: float, low: float, note: str = "") -> None:
    """``value >= low``; ``note`` is added in parentheses (why the bound, or what else is accepted)."""
    if value < low:
        raise ValueError(f"{name}={value} is out of range: expected at least {low}" + (f" ({note})" if note else ""))


def non_negative(name: str, value: float) -> None:
    """``value >= 0``."""
    if value < 0:
        raise ValueError(f"{name}={value} is out of range: expected {name} >= 0")


def positive(name: str, value: float) -> None:
    """``value > 0``."""
    if not value > 0:  # written so that NaN is refused
        raise ValueError(f"{name}={value} is out of range: expected {name} > 0")


def between(
    name: str, value: float, low: float, high: float, *, include_low: bool = True, include_high: bool = True
) -> None:
    """``low <= value <= high``, each end included or not (NaN is refused)."""
    above = low <= value if include_low else low < value
    below = value <= high if include_high else value < high
    if not (above and below):
        low_sign, high_sign = "<=" if include_low else "<", "<=" if include_high else "<"
        raise ValueError(f"{name}={value} is out of range: expected {low} {low_sign} {name} {high_sign} {high}")


def one_of(name: str, value: object, accepted: Collection) -> None:
    """``value`` is one of ``accepted``."""
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not supported: expected one of {', '.join(map(repr, accepted))}")


def like_default(name: str, value: object, default: object) -> None:
    """``value`` has the type of ``default``: a bool for a bool, an int for an int, a number for a float, a string
    for a string (other defaults, such as ``None``, accept anything), so a mistyped option fails with a clear
    ``ValueError`` instead of a ``TypeError`` deep inside."""
    if isinstance(default, bool):
        expected, ok = "true or false", isinstance(value, (bool, np.bool_))
    elif isinstance(default, int):
        expected, ok = "an integer", isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif isinstance(default, float):
        expected, ok = "a number", isinstance(value, numbers.Real) and not isinstance(value, bool)
    elif isinstance(default, str):
        expected, ok = "a string", isinstance(value, str)
    else:
        return
    if not ok:
        raise ValueError(f"{name}={value!r} is {type(value).__name__}: expected {expected}")
