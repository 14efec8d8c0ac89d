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
    kept as strings; ``form`` names the expected shape in the error message. A key given twice is refused (the
    first value would be dropped without a word)."""
    values = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {shorten(item)} is malformed: expected {form}")
        if key in values:
            raise UsageError(f"{flag} {shorten(key)} is given twice: expected each {form.split('=')[0]} once")
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


def shorten(text: str, most: int = 60) -> str:
    """``repr(text)``, cut to ``most`` characters with an ellipsis: what an error line echoes of the user's text."""
    return repr(text[:most]) + ("..." if len(text) > most else "")


def add_settings(
    parser: argparse.ArgumentParser, config_class: type, skip: Sequence[str] = (), aliases: dict[str, str] | None = None
) -> None:
    """A flag for every setting of ``config_class`` (:func:`iftgym.settings.setting`) but ``skip``, generated from
    its field: name, help, type and, in the help, its world; ``aliases`` adds another flag to a field. Every flag
    defaults to *not given* (absent from the parsed namespace), so the config's own defaults apply and
    :func:`given_settings` sees what the user typed."""
    from iftgym.settings import base_type, default_of, field_type, flag_of, settings_of

    for field in settings_of(config_class):
        meta = field.metadata
        if not meta["cli"] or field.name in skip:
            continue
        kind = base_type(field_type(config_class, field))
        flags = [flag_of(field), *([aliases[field.name]] if aliases and field.name in aliases else [])]
        world = f" [{meta['world']}]" if meta["world"] else ""
        default = default_of(field)
        if isinstance(default, list):
            default = ",".join(map(str, default))
        if default in (None, "", {}) or kind is bool:
            shown = ""
        else:
            shown = f" (default: {default:g})" if isinstance(default, float) else f" (default: {default})"
        options: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS, "metavar": meta["metavar"],
                                   "help": meta["help"] + shown + world}  # fmt: skip
        if kind is bool:
            options.pop("metavar")
            parser.add_argument(*flags, action="store_true", **options)
        elif kind is list and field.name == "algos":
            parser.add_argument(*flags, type=split_names, **options)
        elif kind is list:
            parser.add_argument(*flags, nargs="+", **options)
        elif kind is dict and field.name != "model_config":
            parser.add_argument(*flags, action="append", **options)
        else:
            parser.add_argument(*flags, type=kind if kind in (int, float) else str, **options)


def given_settings(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The settings the user gave on the command line, as config keyword arguments (``KEY=VALUE`` lists parsed)."""
    from iftgym.settings import base_type, field_type, flag_of, settings_of

    given = {}
    for field in settings_of(config_class):
        if field.name not in vars(args):
            continue
        value = getattr(args, field.name)
        if base_type(field_type(config_class, field)) is dict and field.name != "model_config":
            value = key_values(value, flag_of(field))
        given[field.name] = value
    return given


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
