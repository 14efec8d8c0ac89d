"""What the sub-commands share: one-line usage errors, shared arguments, option parsing and output folders."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape


class UsageError(ValueError):
    """Bad command-line input; reported as one line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one :class:`UsageError` line, not argparse's usage block."""

    def error(self, message: str) -> None:
        raise UsageError(message)


def add_dynamics_arguments(parser: argparse.ArgumentParser) -> None:
    """``--slippery``, ``--success-rate`` and ``--gamma``: the Frozen Lake dynamics and the exact solver's discount
    (read them back with :func:`dynamics`)."""
    parser.add_argument("--slippery", action="store_true", help="Gymnasium's is_slippery dynamics")
    parser.add_argument("--success-rate", type=float, default=None,
                        help="intended-move probability with --slippery (default: 1/3)")  # fmt: skip
    parser.add_argument("--gamma", type=float, default=0.95, help="exact solver's discount in [0, 1) (default: 0.95)")


def dynamics(args: argparse.Namespace) -> tuple[bool, float, float]:
    """``(slippery, success_rate, gamma)``; a success rate without ``--slippery`` would have no effect: refused."""
    if args.success_rate is not None and not args.slippery:
        raise UsageError("--success-rate has no effect without --slippery: add --slippery or drop --success-rate")
    return args.slippery, 1 / 3 if args.success_rate is None else args.success_rate, args.gamma


def add_training_arguments(parser: argparse.ArgumentParser, algo_flag: str) -> None:
    """``--set``, ``--stage-lr`` and ``--plugin``: rule hyper-parameters, per-stage learning rates, user rules."""
    parser.add_argument("--set", action="append", default=[], metavar="RULE.PARAM=VALUE",
                        help="a rule hyper-parameter, e.g. --set ift.lam=0.3 (repeatable)")  # fmt: skip
    parser.add_argument("--stage-lr", action="append", default=[], metavar="RULE=LR",
                        help="learning rate of one rule's stage in a recipe, e.g. --stage-lr dpo=1e-3 (repeatable; "
                        "default --lr)")  # fmt: skip
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help=f"import a Python file or module first, so that the rules it registers (with "
                        f"iftgym.register_rule) can be named in {algo_flag} (repeatable)")  # fmt: skip


def load_plugins(specs: Sequence[str]) -> None:
    """Import every ``--plugin`` (its ``register_*`` calls run); errors are one line naming the plugin."""
    from iftgym.registry import load_plugin

    for spec in specs:
        load_plugin(spec)


def split_names(text: str) -> list[str]:
    """``"sft, ift(lam=0,gamma=0),sft+dpo"`` -> ``["sft", "ift(lam=0,gamma=0)", "sft+dpo"]``."""
    from iftgym.rules.registry import split_outside_parentheses

    return [name.strip() for name in split_outside_parentheses(text, ",") if name.strip()]


def key_values(items: Sequence[str], flag: str, form: str = "KEY=VALUE") -> dict[str, Any]:
    """``["digits=2", "path=x"]`` -> ``{"digits": 2, "path": "x"}``: values parsed as JSON where they can be, else
    kept as strings; ``form`` names the expected shape in the error message."""
    values = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r} is malformed: expected {form}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["ift.lam=0.3", "dpo.beta=0.5"]`` -> ``{"ift": {"lam": 0.3}, "dpo": {"beta": 0.5}}``; names and values are
    checked against the rules the run trains (see :func:`iftgym.loop.check_algorithms`)."""
    overrides: dict[str, dict[str, Any]] = {}
    form = "RULE.PARAM=VALUE, e.g. ift.lam=0.3"
    for key, value in key_values(items, "--set", form).items():
        rule, dot, param = key.partition(".")
        if not dot or not rule or not param:
            raise UsageError(f"--set {key}={value!r} is malformed: expected {form}")
        overrides.setdefault(rule, {})[param] = value
    return overrides


def quiet_hugging_face() -> None:
    """Keep ``transformers``' own progress bars and advisory warnings out of the command's output (its errors still
    show); a variable the user has set wins."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def run_experiment(
    console: Console, experiment: Callable[..., dict[str, Any]], config: Any, **options: Any
) -> dict[str, Any]:
    """Run ``experiment(config, progress=..., **options)`` under a status line that names what is training."""
    with console.status("training") as status:
        return experiment(config, progress=lambda text: status.update(f"training {escape(text)}"), **options)


def save_outputs(
    console: Console,
    out: Path,
    draw: Callable[[Path], list[Path]],
    results: dict[str, Any] | None = None,
    inputs: Sequence[str | os.PathLike | None] = (),
) -> None:
    """Write ``results.json`` (when given) and the figures ``draw(folder)`` into ``out``, replacing the previous
    run's outputs there all together (:func:`iftgym.io.replace_outputs`), and say what was written. ``inputs`` are
    the files the command read: one that lies in ``out`` is never removed as a previous output (``iftgym plot
    runs/compare/results.json`` keeps the file it redraws)."""
    from iftgym.io import replace_outputs, write_json

    out.mkdir(parents=True, exist_ok=True)
    folder = out.resolve()
    keep = [Path(p).name for p in inputs if p is not None and Path(p).resolve().parent == folder]
    with replace_outputs(out, keep) as staging:
        if results is not None:
            write_json(results, staging / "results.json")
        figures = draw(staging)
    what = f"{escape(str(out / 'results.json'))} and " if results is not None else ""
    console.print(f"wrote {what}{len(figures)} figures in {escape(str(out))}/")


def writable_dir(path: str) -> Path:
    """Check, before any work is done, that ``path`` is a folder files can be written to, or that it can be made
    (its nearest existing parent is a writable folder). Nothing is created here: a run that fails or is interrupted
    leaves no empty folder behind (:func:`save_outputs` creates it with the outputs)."""
    if not path.strip():
        raise UsageError(f"output directory {path!r} is empty: expected a folder path")
    out = Path(path)
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"output directory {path!r} is not writable: {str(existing)!r} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".iftgym-check-"):
            pass
    except OSError as err:
        raise UsageError(f"output directory {path!r} is not writable: {err.strerror}") from None
    return out
