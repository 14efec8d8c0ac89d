"""Argument checks shared by every config and constructor: each raises a ``ValueError`` that names the parameter,
its value and what is accepted, e.g. ``gamma=1.5 is out of range: expected 0 <= gamma <= 1``.

Numbers must be finite (NaN and infinity are refused everywhere), counts must be integers (``steps=2.5`` is refused,
and so is ``True``), and sizes that decide an allocation are checked against the machine's memory before anything
is allocated (:func:`fits_in_memory`).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection

import numpy as np

MAX_SEEDS = 100_000  # seeds train as one model: far more than any comparison needs, far less than memory allows
MAX_STEPS = 10**9  # a billion optimiser steps: beyond any run on this workbench
MAX_GRAD_ACCUM = 1024  # micro-batches per optimiser step
BUDGETS = ("steps", "tokens", "seconds")  # what a run spends: optimiser steps, token passes, seconds of training
MAX_SIDE = 256  # the largest Frozen Lake map side (65,536 cells): every exact solver still runs in seconds

MAX_SETTING = 10**9  # the largest integer hyper-parameter (episodes, epochs, warm-up steps): beyond any run here


def number(name: str, value: object) -> None:
    """A finite real number (a bool is not a number here)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r} is {type(value).__name__}: expected a number")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value} is out of range: expected a finite number")


def at_least(name: str, value: int, low: int, note: str = "", high: int | None = None) -> None:
    """An integer count with ``low <= value`` (and ``value <= high`` when given); ``note`` is added in parentheses
    to the lower bound's message (why the bound, or what else is accepted)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={value!r} is {type(value).__name__}: expected an integer")
    if value < low:
        raise ValueError(f"{name}={value} is out of range: expected at least {low}" + (f" ({note})" if note else ""))
    if high is not None and value > high:
        raise ValueError(f"{name}={value} is out of range: expected at most {high}")


def non_negative(name: str, value: float) -> None:
    """A finite number ``>= 0``."""
    number(name, value)
    if value < 0:
        raise ValueError(f"{name}={value} is out of range: expected {name} >= 0")


def positive(name: str, value: float) -> None:
    """A finite number ``> 0``."""
    number(name, value)
    if not value > 0:
        raise ValueError(f"{name}={value} is out of range: expected {name} > 0")


def between(
    name: str, value: float, low: float, high: float, *, include_low: bool = True, include_high: bool = True
) -> None:
    """A finite number with ``low <= value <= high``, each end included or not."""
    number(name, value)
    above = low <= value if include_low else low < value
    below = value <= high if include_high else value < high
    if not (above and below):
        low_sign, high_sign = "<=" if include_low else "<", "<=" if include_high else "<"
        raise ValueError(f"{name}={value} is out of range: expected {low} {low_sign} {name} {high_sign} {high}")


def one_of(name: str, value: object, accepted: Collection) -> None:
    """``value`` is one of ``accepted``."""
    try:
        ok = value in accepted
    except TypeError:  # an unhashable value looked up in a dict
        ok = False
    if not ok:
        raise ValueError(f"{name}={value!r} is not supported: expected one of {', '.join(map(repr, accepted))}")


def like_default(name: str, value: object, default: object, high: int | None = None) -> None:
    """``value`` has the type of ``default``: a bool for a bool, an int for an int, a finite number for a float, a
    string for a string (other defaults, such as ``None``, accept anything), so a mistyped option fails with a clear
    ``ValueError`` instead of a ``TypeError`` deep inside; ``high`` bounds the size of an integer (either sign)."""
    if isinstance(default, bool):
        expected, ok = "true or false", isinstance(value, (bool, np.bool_))
    elif isinstance(default, int):
        expected, ok = "an integer", isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif isinstance(default, float):
        number(name, value)
        return
    elif isinstance(default, str):
        expected, ok = "a string", isinstance(value, str)
    else:
        return
    if not ok:
        raise ValueError(f"{name}={value!r} is {type(value).__name__}: expected {expected}")
    if high is not None and isinstance(default, int) and not isinstance(default, bool) and abs(value) > high:
        raise ValueError(f"{name}={value} is out of range: expected at most {high} in size")


def memory_bytes() -> int:
    """The machine's physical memory in bytes (0 where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def fits_in_memory(what: str, n_bytes: float, advice: str, share: float = 0.5) -> None:
    """Refuse, before allocating, anything estimated to need more than ``share`` of the machine's memory."""
    total = memory_bytes()
    if total and n_bytes > share * total:
        raise ValueError(f"{what} needs about {_size(n_bytes)}, more than this machine's {_size(total)} of memory "
                         f"allows: {advice}")  # fmt: skip


def _size(n_bytes: float) -> str:
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    index = 0
    while n_bytes >= 1024 and index < len(units) - 1:
        n_bytes, index = n_bytes / 1024, index + 1
    return f"{n_bytes:.1f} {units[index]}"
