"""``iftgym explore``: an explorer served as a web page on this machine (Voila renders its widgets without the
notebook's cells), its address printed and, unless ``--no-browser``, opened in the browser."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from iftgym.cli.common import UsageError
from iftgym.errors import RunFailed
from iftgym.interactive.pages import PAGE_SETTINGS, PAGES, check_page

HOST = "127.0.0.1"
DEFAULT_PORT = 8866  # Voila's own default
START_SECONDS = 60.0  # how long the server may take to listen before it is given up


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym explore`` and its options."""
    parser = sub.add_parser(
        "explore", help="serve an explorer (frozen-lake, tiny-lm, bias) as a web page on this machine (Voila)"
    )
    names = ", ".join(f"{name} ({what})" for name, what in PAGES.items())
    parser.add_argument("explorer", nargs="?", default="frozen-lake", metavar="EXPLORER",
                        help=f"which explorer: {names}; default frozen-lake")  # fmt: skip
    parser.add_argument("--port", type=_port, default=None,
                        help=f"port on {HOST} (default: {DEFAULT_PORT} if free, else a free one)")  # fmt: skip
    parser.add_argument("--no-browser", action="store_true", help="print the address only; open no browser")
    for key, what in (("seeds", "seeds each rule trains"), ("steps", "training steps")):
        ranges = "; ".join(f"{name} {limits[key][0]}-{limits[key][1]}, default {limits[key][2]}"
                           for name, limits in PAGE_SETTINGS.items())  # fmt: skip
        parser.add_argument(f"--{key}", type=int, default=None, help=f"{what} at start ({ranges})")
    parser.set_defaults(run=run)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: expected an integer 1-65535")
    return port


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym explore``: check the input, start Voila on the page's notebook, print the address once it
    listens, open a browser unless ``--no-browser``, and serve until Ctrl-C."""
    if args.explorer not in PAGES:
        raise UsageError(f"unknown explorer {args.explorer!r}: expected one of {', '.join(PAGES)}")
    settings = check_page(args.explorer, seeds=args.seeds, steps=args.steps)
    if importlib.util.find_spec("voila") is None:
        raise UsageError("iftgym explore serves pages with Voila, which is not installed: pip install -e "
                         "'.[notebooks]'")  # fmt: skip
    port = args.port if args.port is not None else (DEFAULT_PORT if _free(DEFAULT_PORT) else _any_free_port())
    if not _free(port):
        raise UsageError(f"port {port} on {HOST} is in use: choose another with --port, or leave --port out for a "
                         "free one")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="iftgym-explore-") as folder:
        notebook = write_page_notebook(Path(folder), args.explorer, settings)
        template = write_template(Path(folder))
        log = Path(folder) / "server.log"
        url = f"http://{HOST}:{port}/"
        env = {**os.environ, "JUPYTER_PATH": os.pathsep.join(filter(None, [folder, os.environ.get("JUPYTER_PATH")]))}
        with log.open("w") as out:
            server = subprocess.Popen(server_command(notebook, port, template), stdout=out, stderr=subprocess.STDOUT,
                                      cwd=folder, env=env)  # fmt: skip
            try:
                _wait_listening(server, port, log)
                console.print(f"iftgym explore: the {args.explorer} explorer is at {url} (Ctrl-C to stop)",
                              highlight=False, soft_wrap=True)  # fmt: skip
                if not args.no_browser:
                    import webbrowser

                    webbrowser.open(url)
                status = server.wait()
                raise RunFailed(f"the server stopped (exit status {status}): {_last_line(log)}")
            finally:
                _stop(server)


def server_command(notebook: Path, port: int, template: str = "lab") -> list[str]:
    """The command that serves ``notebook`` on ``port`` of 127.0.0.1 and no other: Voila, with this Python (its
    kernel too)."""
    return [sys.executable, "-m", "voila", str(notebook), f"--Voila.ip={HOST}", f"--port={port}",
            "--Voila.port_retries=0", "--no-browser", "--VoilaConfiguration.show_tracebacks=True", "--theme=light",
            f"--template={template}"]  # fmt: skip


def write_template(folder: Path) -> str:
    """A Voila template under ``folder`` (on ``JUPYTER_PATH``): Voila's ``lab`` template without its two links to
    Font Awesome on a CDN (Voila bundles the icons; a page on 127.0.0.1 should reach nothing else). Its name, or
    ``"lab"`` where Voila's template is not where this expects it."""
    # voila located, not imported: its import loads the whole server, seconds spent before the server's own start
    spec = importlib.util.find_spec("voila")
    lab = Path(next(iter(spec.submodule_search_locations or ()), ".")) / "templates"  # one of two places, by install
    candidates = [Path(sys.prefix) / "share" / "jupyter" / "voila" / "templates" / "lab" / "index.html.j2",
                  lab / "lab" / "index.html.j2"]  # fmt: skip
    source = next((path for path in candidates if path.is_file()), None)
    if source is None:
        return "lab"
    text = "\n".join(line for line in source.read_text().splitlines() if "cdn.jsdelivr.net" not in line)
    target = folder / "voila" / "templates" / "iftgym"
    target.mkdir(parents=True)
    (target / "index.html.j2").write_text(text)
    (target / "conf.json").write_text(json.dumps({"base_template": "lab"}))
    return "iftgym"


def write_page_notebook(folder: Path, name: str, settings: dict[str, int]) -> Path:
    """A one-cell notebook in ``folder`` that shows the page ``name`` built with ``settings``."""
    call = ", ".join([repr(name), *(f"{key}={value!r}" for key, value in settings.items())])
    source = f"from iftgym.interactive.pages import page\n\npage({call})"
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "page", "metadata": {}, "outputs": [],
                   "source": source}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    path = folder / f"iftgym {name}.ipynb"  # Voila shows the notebook's name as the page's title
    path.write_text(json.dumps(notebook))
    return path


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_listening(server: subprocess.Popen, port: int, log: Path) -> None:
    """Return once the server accepts connections on ``port``; a server that exits first, or does not listen in
    :data:`START_SECONDS`, is a UsageError with the last line it wrote."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise UsageError(f"the server could not start (exit status {server.returncode}): {_last_line(log)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise UsageError(f"the server did not listen on {HOST}:{port} within {START_SECONDS:.0f} s: {_last_line(log)}")


def _last_line(log: Path) -> str:
    """The server's last meaningful line (its error, as a rule), or a note that it wrote nothing."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "it wrote nothing"


def _stop(server: subprocess.Popen) -> None:
    """End the server (and with it the page's kernel): SIGTERM, then SIGKILL after 5 s."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
