"""The ``iftgym`` command line: one module per sub-command, each rendering what an experiment returns.

Every sub-command module has ``add_parser(subparsers)`` and ``run(args, console)``; heavy libraries (torch,
matplotlib) are imported inside ``run``, so ``iftgym --help`` starts fast. Errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from iftgym.cli import bias, compare, explore, generate, lm, maps, plot, solve, sweep
from iftgym.cli.common import Parser, UsageError
from iftgym.errors import RunFailed

COMMANDS = (maps, solve, compare, plot, bias, lm, generate, sweep, explore)

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``iftgym`` parser with every sub-command."""
    parser = Parser(prog="iftgym", description="Fine-tuning rules on a workbench small enough to solve exactly.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds (and cleans up) as on Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iftgym`` console script: 0 on success, 2 for invalid input (nothing was done), 1 for a
    run that failed part-way, 130 on Ctrl-C and 143 on SIGTERM; every failure is one line on stderr."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # files and pipes get whole table rows instead of 80-column wrapping
        console = Console(width=140)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    args = None
    try:
        args = build_parser().parse_args(argv)
        run: Callable[[argparse.Namespace, Console], None] = args.run
        run(args, console)
    except ValueError as err:
        return _fail(str(err), 2)
    except (RunFailed, OSError, MemoryError) as err:
        what = "out of memory" if isinstance(err, MemoryError) else str(err)
        return _fail(what + _kept(args), 1)
    except RuntimeError as err:
        if type(err).__name__ != "OutOfMemoryError":  # torch's (a GPU ran out); anything else is a bug: show it
            raise
        return _fail(f"out of memory on the GPU: {str(err).splitlines()[0]}" + _kept(args), 1)
    except KeyboardInterrupt as err:
        return _fail("interrupted" + (" by SIGTERM" if isinstance(err, Terminated) else "") + _kept(args),
                     143 if isinstance(err, Terminated) else 130)  # fmt: skip
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _kept(args: argparse.Namespace | None) -> str:
    """What a run that stopped left behind: its output folder as it was (outputs are replaced only at the end)."""
    out = getattr(args, "out", None) or getattr(args, "png", None)
    live = getattr(args, "live_log", None)
    if live is not None and live.exists():
        return f"; {out} was left as it was, but for {live.name}, which holds the steps this run measured"
    return f"; {out} was left as it was" if out else ""


MAX_MESSAGE = 400  # an error line echoes at most this much: a user's 200 KB argument is cut, not printed back


def _fail(message: str, status: int) -> int:
    message = " ".join(message.split("\n"))  # one line, whatever the message's parts held
    if len(message) > MAX_MESSAGE:
        cut = len(message) - MAX_MESSAGE + 80
        message = f"{message[: MAX_MESSAGE - 160]} [... {cut:,} characters cut ...] {message[-80:]}"
    print(f"iftgym: error: {message}" if status in (1, 2) else f"iftgym: {message}", file=sys.stderr)
    return status
