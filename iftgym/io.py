"""Writing files safely: every file atomically, and a run's outputs replaced together.

* :func:`atomic_path`: a file is written to a temporary name in its folder and renamed into place, so a reader
  never sees half a file and an interrupted write leaves the previous file intact.
* :func:`replace_folder`: a folder (a saved model) is written beside its place and renamed into it.
* :func:`replace_outputs`: a run writes all its outputs into a staging folder inside its output folder; only when
  all are written do they replace the previous run's outputs, with interrupts held back for the moment of the swap,
  so old and new files never mix. A manifest names the files a run wrote, so the next run removes exactly those
  and never a file of the user's.
* :func:`safe_name`: every file or folder name made from user text (rules, variants, maps, tasks, worlds, axes)
  goes through it, so no text can name a path outside its folder.
* Temporary files and staging folders carry the writing process's id: what a killed run left behind is removed by
  the next run in that folder (:func:`remove_leftovers`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MANIFEST = ".iftgym-outputs.json"
STAGING = ".iftgym-staging-"
_TEMPORARY = re.compile(r"^\..+\.pid(\d+)\.[^.]+\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _temporary_beside(path: Path, folder: bool = False) -> Path:
    """A new, empty temporary file (or folder) in ``path``'s folder, named after ``path`` and this process (what
    :func:`remove_leftovers` recognises); a failure is an ``OSError`` naming ``path``."""
    prefix, suffix = f".{path.name}.pid{os.getpid()}.", ".tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if folder:
            return Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix))
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
        os.close(fd)
        return Path(name)
    except OSError as err:
        raise OSError(f"cannot write {str(path)!r}: {err.strerror or err}") from None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` (created with the usual permissions,
    ``0o666`` less the umask, not ``mkstemp``'s private ``0o600``); on failure it is removed. Errors name ``path``,
    never the temporary file."""
    path = Path(path)
    tmp = _temporary_beside(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(f"cannot write {str(path)!r}: {err.strerror or err}") from None
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def replace_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty folder beside ``path`` to fill; when the block ends normally it takes ``path``'s place
    (a previous folder there is removed after the swap, with interrupts held back for the moment of the swap); on
    an error or an interrupt it is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = _temporary_beside(path, folder=True)
    try:
        yield tmp
        old = path.with_name(f".{path.name}.pid{os.getpid()}.old.tmp")
        with _signals_held():
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files and staging folders in ``folder`` whose writing process no longer runs (a run
    killed by SIGKILL or a power cut); returns what was removed."""
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        match = _TEMPORARY.match(entry.name)
        pid = int(match.group(1)) if match else None
        if entry.name.startswith(STAGING) and entry.name[len(STAGING) :].isdigit():
            pid = int(entry.name[len(STAGING) :])
        if pid is not None and not _alive(pid):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


_UNSAFE = re.compile(r"(?:[^A-Za-z0-9._]|\.{2,})+")  # runs of other characters, and of dots, become one "-"
MAX_NAME = 80


def safe_name(text: str, taken: frozenset[str] | set[str] = frozenset(), default: str = "item") -> str:
    """A file or folder name made from user text that stays inside its folder: letters, digits, ``.``, ``_`` and
    ``-`` only (every other run of characters, or of dots and dashes, becomes ``-``), never hidden, never empty
    (``default``), at most ``MAX_NAME`` characters (a longer text is cut and keeps a hash of the whole, so two long
    texts stay apart) and never one of ``taken`` (``-2``, ``-3``... appended): ``ift(lam=0)`` -> ``ift-lam-0``,
    ``../../x`` -> ``x``."""
    stem = _UNSAFE.sub("-", text).strip(".-") or default
    if len(stem) > MAX_NAME:
        stem = f"{stem[: MAX_NAME - 9]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    unique, index = stem, 2
    while unique in taken:
        unique, index = f"{stem}-{index}", index + 1
    return unique


def inside(folder: str | os.PathLike, text: str) -> Path:
    """``folder / safe_name(text)``: the path of an entry named after user text, always directly in ``folder``."""
    return Path(folder) / safe_name(text)


@contextmanager
def replace_outputs(out: Path, keep: Collection[str] = ()) -> Iterator[Path]:
    """Yield a staging folder inside ``out`` to write a run's outputs into; when the block ends normally, they
    replace the previous run's outputs in ``out`` all together (files of the previous run that this run did not
    write are removed, except the names in ``keep``: the files this run read its input from; other files are left
    alone). On an error or an interrupt ``out`` is left as it was."""
    remove_leftovers(out)
    staging = out / f"{STAGING}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        with _signals_held():
            _swap(staging, out, set(keep))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, out: Path, keep: set[str]) -> None:
    new = sorted(p.name for p in staging.iterdir())
    try:
        old = json.loads((out / MANIFEST).read_text())["files"]
        old = [name for name in old if isinstance(name, str)]
    except (OSError, ValueError, KeyError, TypeError):
        old = []
    kept = sorted(name for name in set(old) & keep - set(new) if (out / name).is_file())
    for name in new:
        os.replace(staging / name, out / name)
    for name in set(old) - set(new) - keep:
        if "/" not in name and name not in (MANIFEST, ".", "..") and not (out / name).is_dir():
            (out / name).unlink(missing_ok=True)
    write_json({"files": sorted(new + kept)}, out / MANIFEST)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (they are delivered right after)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def strict(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None``, so that it is strict JSON (``null``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(item) for item in value]
    return value


def write_json(data: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as indented, strict JSON (NaN and infinity become ``null``), atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(strict(data), indent=1, allow_nan=False))
    return Path(path)


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file; every failure (missing, unreadable, not a regular file, larger than
    :data:`MAX_JSON_BYTES`, binary, malformed, nested too deeply to parse) is one ``ValueError`` naming the file and
    ``what`` it should be."""
    try:
        text = _read_regular_file(Path(path), what, MAX_JSON_BYTES).decode("utf-8")
    except OSError as err:
        raise ValueError(f"cannot read {what} {str(path)!r}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} {str(path)!r} is not a text file: expected JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {err.msg} at line {err.lineno}") from None
    except ValueError as err:  # a number too long to convert
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {str(err)[:80]}") from None
    except RecursionError:
        raise ValueError(f"{what} {str(path)!r} is nested too deeply to read: expected JSON") from None


# the largest JSON file read_json reads: a comparison on the largest maps writes a few hundred MB
MAX_JSON_BYTES = 1 << 30


def refuse_irregular(path: str | os.PathLike, what: str, info: os.stat_result | None = None,
                     limit: int | None = None) -> None:  # fmt: skip
    """Refuse, from its ``stat`` alone (the file is not opened, so a FIFO cannot hang the reader), a ``path`` that
    is a folder, a FIFO, a socket or a device, or a file over ``limit`` bytes; a missing file is an ``OSError``."""
    import stat

    info = os.stat(path) if info is None else info
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"cannot read {what} {str(path)!r}: Is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"cannot read {what} {str(path)!r}: not a regular file (a FIFO, socket or device)")
    if limit is not None and info.st_size > limit:
        raise ValueError(f"{what} {str(path)!r} is {info.st_size:,} bytes: at most {limit:,} are read")


def _read_regular_file(path: Path, what: str, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes; anything else (a folder, a FIFO, a device,
    a larger file) is refused before its data is read: a FIFO is never opened, so it cannot hang the reader."""

    def refuse(info: os.stat_result) -> None:
        refuse_irregular(path, what, info, limit)

    refuse(os.stat(path))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as file:
        refuse(os.fstat(file.fileno()))  # the same file, in case it was replaced after the first look
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{what} {str(path)!r} is over {limit:,} bytes: at most {limit:,} are read")
    return data


class LazyLog:
    """A JSONL log at ``path`` that is created (with its folder) only when its first record is written — so a run
    refused during its checks leaves nothing — then one record a line, flushed as written (a killed run keeps what it
    measured)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = None

    def __call__(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._file.write(json.dumps(strict(record)) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file, if one was created."""
        if self._file is not None:
            self._file.close()
