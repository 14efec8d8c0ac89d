"""Spreading independent work over the cores: how many there are, and a map over threads."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it, else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_map(function: Callable[[Item], Result], items: Iterable[Item], threads: int | None = None) -> list[Result]:
    """``[function(item) for item in items]``, in ``threads`` threads (default :func:`available_cores`) — worth it
    only where ``function`` spends its time in code that releases the GIL (SuperLU's factorisation, numpy's larger
    operations); results in the order of ``items``, and the first error raised as it would be in the loop."""
    items = list(items)
    threads = min(available_cores() if threads is None else threads, len(items))
    if threads <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, items))
