"""What every benchmark writes with ``--json PATH``: its measured numbers, their units and targets, and where and how
they were measured (schema ``iftgym.bench/1``). ``docs/make_readme_tables.py`` renders the README's Speed table from
these files (``--take`` copies one into ``docs/results/``).

The file::

    {"schema": "iftgym.bench/1", "benchmark": "bench_env",
     "command": "python benchmarks/bench_env.py --json runs/bench-env.json", "argv": ["--json", "..."],
     "date": "2025-01-01T12:00:00+00:00",
     "machine": {"cores": 2, "cpu": "...", "platform": "...", "python": "3.12.3", "torch": "2.5.1", "cuda": null},
     "settings": {...the parsed arguments...},
     "numbers": {"vector_deterministic": {"value": 135.2, "unit": "x", "label": "deterministic",
                                          "target": {"op": ">=", "value": 50.0}}, ...},
     "targets": [{"target": "native vector env at least 50x ...", "numbers": ["vector_deterministic", ...],
                  "note": "optional remark"}, ...],
     "info": {...anything else the benchmark keeps, e.g. library versions...}}

``numbers`` are what was measured (``value`` ``null``: not measured, e.g. no CUDA device); a number with a ``target``
is met when ``value op target`` holds. ``targets`` are the README's rows: a target's text and the numbers shown for
it, in order (numbers without a target of their own give context). Benchmarks run as ``python benchmarks/x.py``, so
this folder is on ``sys.path`` and they ``import _results``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import operator
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iftgym.io import write_json

SCHEMA = "iftgym.bench/1"
OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}


def round_count(text: str) -> int:
    """``--rounds``: a whole number of at least 1 (a median of no rounds is nothing), else argparse's one-line error
    and exit status 2."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rounds: expected a whole number >= 1")
    return value


def add_json_option(parser: argparse.ArgumentParser) -> None:
    help = f"also write the measured numbers and their targets to PATH (schema {SCHEMA})"
    parser.add_argument("--json", metavar="PATH", default=None, help=help)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """Cores, CPU model, platform, Python and torch versions, and the CUDA device where torch sees one."""
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    cuda = None
    torch = sys.modules.get("torch")  # only where the benchmark imported torch: no import cost for the others
    if torch is not None and torch.cuda.is_available():
        cuda = torch.cuda.get_device_name()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cores": os.cpu_count(), "usable_cores": usable, "cpu": cpu_model(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch_version, "cuda": cuda}  # fmt: skip


def met(number: dict[str, Any]) -> bool | None:
    """Whether a number meets its target (``None``: it has none, or was not measured)."""
    target = number.get("target")
    if target is None or number["value"] is None:
        return None
    return bool(OPS[target["op"]](number["value"], target["value"]))


class Results:
    """A benchmark's numbers and targets as it measures them; :meth:`write` saves them where ``--json`` says."""

    def __init__(self, benchmark: str, args: argparse.Namespace, argv: Sequence[str] | None = None) -> None:
        self.benchmark, self.args = benchmark, args
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.numbers: dict[str, dict[str, Any]] = {}
        self.targets: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}  # anything else worth keeping (library versions, the device...)

    def number(self, key: str, value: float | bool | None, unit: str, label: str,
               target: tuple[str, float | bool] | None = None) -> dict[str, Any]:  # fmt: skip
        """Record a measured number (``unit``: ``"s"``, ``"x"`` for a ratio, ``"MiB"``, ``"steps/s"``, ``""``...;
        ``target``: ``(op, value)``, e.g. ``("<=", 5.0)``); returns the entry."""
        if key in self.numbers:
            raise ValueError(f"{self.benchmark} records the number {key!r} twice")
        if target is not None and target[0] not in OPS:
            raise ValueError(f"unknown comparison {target[0]!r}: one of {', '.join(OPS)}")
        entry: dict[str, Any] = {"value": value if value is None or isinstance(value, bool) else float(value),
                                 "unit": unit, "label": label}  # fmt: skip
        if target is not None:
            entry["target"] = {"op": target[0], "value": target[1]}
        self.numbers[key] = entry
        return entry

    def target(self, text: str, *keys: str, note: str | None = None) -> None:
        """A row of the README's Speed table: the target's text and the numbers shown for it, in order (``note``: a
        remark printed after them, e.g. why they were not measured)."""
        unknown = [key for key in keys if key not in self.numbers]
        if unknown:
            raise ValueError(f"{self.benchmark}: target {text!r} shows unrecorded numbers {unknown}")
        self.targets.append({"target": text, "numbers": list(keys), **({"note": note} if note else {})})

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "benchmark": self.benchmark,
            "command": shlex.join(["python", f"benchmarks/{self.benchmark}.py", *self.argv]),
            "argv": self.argv,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "settings": {key: value for key, value in vars(self.args).items() if key != "json"},
            "numbers": self.numbers,
            "targets": self.targets,
            "info": self.info,
        }

    def write(self) -> Path | None:
        """Write the file to ``--json``'s path, atomically (nothing without ``--json``); returns the path."""
        path = getattr(self.args, "json", None)
        if not path:
            return None
        written = write_json(self.to_json(), path)
        print(f"numbers written to {written}")
        return written
