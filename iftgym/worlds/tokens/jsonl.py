"""User data for the token world: JSONL files in TRL's standard formats, one JSON object a line.

``{"prompt", "completion"}`` (SFT, IFT) or ``{"prompt", "chosen", "rejected"}`` (DPO, ORPO; the chosen answer doubles
as the demonstration), string values, one format for the whole file. The task's reward is exact match with any
reference answer of the prompt. Every error names the file and the line.

What a file must be, beyond the two formats (each broken case is refused with one line, never trained on):

* valid JSON on every non-blank line: no ``NaN`` or ``Infinity`` (Python's ``json`` would read them), no key twice
  in one object (JSON parsers would silently keep one of them); a UTF-8 byte order mark is skipped at the start of
  the file only, where editors write one;
* UTF-8 text, every used string valid Unicode (a lone surrogate such as ``"\\ud800"`` is valid JSON but no text: it
  breaks writing results and figures later);
* non-empty answers (``completion``, ``chosen``, ``rejected``): an empty answer is only ``<eos>``, and a file of
  them trains on nothing and scores a perfect exact match; ``chosen`` and ``rejected`` differ, else the pair
  carries no preference. An empty ``prompt`` is kept: it is unconditional generation (the answer follows ``<bos>``);
* bounded sizes: fields of at most ``MAX_EXAMPLE_CHARS`` characters, lines of at most ``MAX_LINE_BYTES`` bytes
  (checked before parsing), at most ``MAX_EXAMPLES`` examples and ``MAX_TOTAL_CHARS`` characters a file.

Other keys are ignored, as TRL ignores extra columns. TRL's other formats (conversational ``messages``, language
modelling ``text``, unpaired preference ``label``, implicit-prompt ``chosen``/``rejected``) are refused by name.
"""

from __future__ import annotations

import codecs
import itertools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from iftgym.worlds.tokens.tasks import Example, Task, register_task

MAX_EXAMPLE_CHARS = 1000
MAX_LINE_BYTES = 1_000_000  # three fields of 1000 characters, each escaped as \uXXXX pairs, fit 30 times over
MAX_EXAMPLES = 1_000_000
MAX_TOTAL_CHARS = 100_000_000
ANSWER_KEYS = ("completion", "chosen", "rejected")
ACCEPTED = "expected prompt/completion or prompt/chosen/rejected with string values"


def shipped_data(name: str) -> Path:
    """Path of a sample file shipped in ``envs/tokens`` (``"reverse"`` -> ``.../tokens/reverse.jsonl``)."""
    return Path(str(resources.files("iftgym.data") / "tokens" / f"{name}.jsonl"))


class _Refused(ValueError):
    """A problem found while the JSON is parsed (a hook cannot know the file and line)."""


def _no_constant(name: str) -> Any:
    raise _Refused(f"invalid JSON ({name} is not a JSON value: write a number, null or a string)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Refused(f"key {key!r} appears twice in one object: expected each key once")
        seen.add(key)
    return dict(pairs)


def _field(record: dict, key: str, where: str) -> str:
    value = record[key]
    if isinstance(value, list):
        raise ValueError(f"{where}: field {key!r} is a list of messages (conversational format), which is not "
                         "supported: expected a string")  # fmt: skip
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise ValueError(f"{where}: field {key!r} is {kind}, expected a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # JSON's "\ud800" escapes decode to half a UTF-16 pair, which is no text
        bad = f"{value[err.start]!r} at character {err.start + 1}"
        raise ValueError(f"{where}: field {key!r} is not valid Unicode text (a lone surrogate): {bad}, expected "
                         "characters that UTF-8 can encode") from None  # fmt: skip
    if key in ANSWER_KEYS and not value:
        raise ValueError(f"{where}: field {key!r} is empty: expected at least one character")
    if len(value) > MAX_EXAMPLE_CHARS:
        raise ValueError(f"{where}: field {key!r} is {len(value)} characters long: expected at most "
                         f"{MAX_EXAMPLE_CHARS}")  # fmt: skip
    return value


def _short(text: str, width: int = 40) -> str:
    """``repr`` of ``text``, cut to about ``width`` characters (a message stays one short line)."""
    return repr(text) if len(text) <= width else repr(text[:width]) + "..."


def parse_example(line: str, where: str) -> Example:
    """One JSONL line as an :class:`Example`; ``where`` (``"file, line 3"``) prefixes every error."""
    try:
        record = json.loads(line, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except _Refused as err:
        raise ValueError(f"{where}: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:  # thousands of nested brackets
        raise ValueError(f"{where}: invalid JSON (nested too deeply): {ACCEPTED}") from None
    except ValueError as err:  # Python's own limits, e.g. an integer of more than 4300 digits
        raise ValueError(f"{where}: invalid JSON ({err}): {ACCEPTED}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key, name in (("messages", "conversational"), ("text", "language-modelling")):
        if key in record and "prompt" not in record:
            raise ValueError(f"{where}: key {key!r} marks TRL's {name} format, which is not supported: {ACCEPTED}")
    if "prompt" not in record:
        if "chosen" in record and "rejected" in record:
            raise ValueError(f"{where}: 'chosen' and 'rejected' without 'prompt' are TRL's implicit-prompt "
                             "preference format, which is not supported: expected a key 'prompt'")  # fmt: skip
        raise ValueError(f"{where}: missing key 'prompt' (accepted formats: prompt/completion, "
                         "prompt/chosen/rejected)")  # fmt: skip
    prompt = _field(record, "prompt", where)
    if "label" in record:
        raise ValueError(f"{where}: key 'label' marks TRL's unpaired preference format (prompt/completion/label), "
                         "which is not supported: expected prompt/completion or prompt/chosen/rejected")  # fmt: skip
    if "completion" in record and ("chosen" in record or "rejected" in record):
        raise ValueError(f"{where}: key 'completion' cannot be mixed with 'chosen' or 'rejected': expected "
                         "prompt/completion or prompt/chosen/rejected")  # fmt: skip
    if "completion" in record:
        return Example(prompt, _field(record, "completion", where))
    if "chosen" in record and "rejected" in record:
        chosen, rejected = _field(record, "chosen", where), _field(record, "rejected", where)
        if chosen == rejected:
            raise ValueError(f"{where}: chosen and rejected are identical ({_short(chosen)}): expected a rejected "
                             "answer that differs from the chosen one")  # fmt: skip
        return Example(prompt, chosen, rejected)
    raise ValueError(f"{where}: expected key 'completion', or both 'chosen' and 'rejected'; "
                     f"got keys {', '.join(map(repr, record))}")  # fmt: skip


def _format(example: Example) -> str:
    return "prompt/completion" if example.rejected is None else "prompt/chosen/rejected"


def _check_path(name: str, path: object) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name}={path!r} is {type(path).__name__}: expected a path to a JSONL file")
    if "\0" in os.fspath(path):  # the operating system cannot open such a name
        raise ValueError(f"{name}={os.fspath(path)!r} holds a NUL character: expected a path to a JSONL file")


def load_jsonl(path: str | os.PathLike) -> list[Example]:
    """Read a JSONL file in TRL's prompt/completion or prompt/chosen/rejected format; blank lines are skipped.

    Lines end at ``"\\n"`` only (a JSON string may hold U+2028), and are checked one at a time, each before it is
    parsed, so a huge or endless file is refused early. Errors name the file and the line.
    """
    _check_path("path", path)
    examples: list[Example] = []
    first, total = 0, 0
    try:
        with open(path, "rb") as file:
            for number in itertools.count(1):
                raw = file.readline(MAX_LINE_BYTES + 2)  # room for "\r\n"
                if not raw:
                    break
                where = f"{path}, line {number}"
                if len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
                    raise ValueError(f"{where}: the line is longer than {MAX_LINE_BYTES} bytes: expected one example "
                                     f"with fields of at most {MAX_EXAMPLE_CHARS} characters")  # fmt: skip
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ValueError(f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at byte {err.start + 1}): "
                                     "expected a UTF-8 encoded file") from None  # fmt: skip
                if line.startswith("\ufeff"):
                    raise ValueError(f"{where}: the line starts with a byte order mark (U+FEFF), which only the start "
                                     "of a file may hold: remove it (were files joined together?)")  # fmt: skip
                if not line.strip():
                    continue
                example = parse_example(line, where)
                if not examples:
                    first = number
                elif _format(example) != _format(examples[0]):
                    raise ValueError(f"{where}: format {_format(example)} differs from line {first} "
                                     f"({_format(examples[0])}): expected one format for the whole file")  # fmt: skip
                total += len(example.prompt) + len(example.completion) + len(example.rejected or "")
                if len(examples) == MAX_EXAMPLES or total > MAX_TOTAL_CHARS:
                    raise ValueError(f"{where}: data file {str(path)!r} is too large: expected at most "
                                     f"{MAX_EXAMPLES} examples and {MAX_TOTAL_CHARS} characters (tiny models train on "
                                     "far fewer; take a sample)")  # fmt: skip
                examples.append(example)
    except OSError as err:
        raise ValueError(f"cannot read data file {str(path)!r}: {err.strerror or err}") from None
    if not examples:
        raise ValueError(f"data file {str(path)!r} has no examples: expected one JSON object per line")
    return examples


class JSONLTask(Task):
    """User data from a JSONL file (or the name of a file shipped in ``envs/tokens``); the test split is
    ``test_path`` when given, else the training examples themselves (there is no held-out split then)."""

    name = "jsonl"

    def __init__(self, path: str | os.PathLike, test_path: str | os.PathLike | None = None) -> None:
        _check_path("path", path)
        if test_path is not None:
            _check_path("test_path", test_path)
        self.path = self._resolve(path)
        self.train = load_jsonl(self.path)
        self.test = load_jsonl(self._resolve(test_path)) if test_path is not None else self.train

    @staticmethod
    def _resolve(path: str | os.PathLike) -> Path:
        if not Path(path).exists() and shipped_data(str(path)).is_file():
            return shipped_data(str(path))
        return Path(path)


register_task(JSONLTask.name, JSONLTask)
