"""User data for the token world: JSONL files in TRL's standard and conversational formats, one JSON object a line.

Standard: ``{"prompt", "completion"}`` (SFT, IFT) or ``{"prompt", "chosen", "rejected"}`` (DPO, ORPO; the chosen
answer doubles as the demonstration), string values. Conversational: the same keys holding lists of
``{"role", "content"}`` messages (the prompt's turns; one assistant message for each answer), or
``{"messages": [...]}``, a whole conversation ending with the assistant's turn, every assistant turn of which is a
target (TRL's ``assistant_only_loss``); roles are system, user and assistant. One format for the whole file. The
loss is on assistant tokens only; the task's reward is exact match with any reference answer of the prompt. Every
error names the file and the line.

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

Other keys are ignored, as TRL ignores extra columns (and so are a message's keys beyond role and content). TRL's
other formats (language modelling ``text``, unpaired preference ``label``, implicit-prompt ``chosen``/``rejected``)
are refused by name.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from iftgym.io import refuse_irregular
from iftgym.worlds.tokens.tasks import Example, Task, register_task
from iftgym.worlds.tokens.tokenizer import ROLES, Conversation, Message

MAX_EXAMPLE_CHARS = 1000
MAX_LINE_BYTES = 1_000_000  # three fields of 1000 characters, each escaped as \uXXXX pairs, fit 30 times over
MAX_EXAMPLES = 1_000_000
MAX_TOTAL_CHARS = 100_000_000
ANSWER_KEYS = ("completion", "chosen", "rejected")
ACCEPTED = (
    "expected prompt/completion or prompt/chosen/rejected (strings, or lists of role/content messages), or messages"
)


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


def _field(record: dict, key: str, where: str, conversational: bool = False) -> str | Conversation:
    """A checked string field, or with ``conversational`` a checked list of messages (an answer: its one assistant
    message's content)."""
    value = record[key]
    if conversational:
        return _messages(value, key, where)
    if isinstance(value, list):
        raise ValueError(f"{where}: field {key!r} is a list of messages while 'prompt' is a string: expected every "
                         "field a string, or every field a list of messages")  # fmt: skip
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise ValueError(f"{where}: field {key!r} is {kind}, expected a string")
    return _text(value, key, where)


def _text(value: str, key: str, where: str, answer: bool | None = None) -> str:
    """``value`` checked as the text of ``key``: valid Unicode, not too long, not empty where an answer (by default,
    where ``key`` names one)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # JSON's "\ud800" escapes decode to half a UTF-16 pair, which is no text
        bad = f"{value[err.start]!r} at character {err.start + 1}"
        raise ValueError(f"{where}: field {key!r} is not valid Unicode text (a lone surrogate): {bad}, expected "
                         "characters that UTF-8 can encode") from None  # fmt: skip
    if (key in ANSWER_KEYS if answer is None else answer) and not value:
        raise ValueError(f"{where}: field {key!r} is empty: expected at least one character")
    if len(value) > MAX_EXAMPLE_CHARS:
        raise ValueError(f"{where}: field {key!r} is {len(value)} characters long: expected at most "
                         f"{MAX_EXAMPLE_CHARS}")  # fmt: skip
    return value


def _messages(value: Any, key: str, where: str) -> Conversation:
    """A list of ``{"role", "content"}`` messages, checked; an answer field holds exactly one assistant message."""
    if not isinstance(value, list) or not value:
        kind = "an empty list" if value == [] else type(value).__name__
        raise ValueError(f"{where}: field {key!r} is {kind}: expected a list of {{'role', 'content'}} messages")
    messages = []
    for number, message in enumerate(value, 1):
        at = f"{where}: message {number} of {key!r}"
        if not isinstance(message, dict) or not {"role", "content"} <= message.keys():
            raise ValueError(f"{at} is not a message: expected an object with keys 'role' and 'content'")
        if message["role"] not in ROLES:
            raise ValueError(f"{at} has role {message['role']!r}: expected one of {', '.join(ROLES)}")
        if not isinstance(message["content"], str):
            raise ValueError(f"{at} has content of type {type(message['content']).__name__}: expected a string")
        answer = key in ANSWER_KEYS or (key == "messages" and number == len(value))
        content = _text(message["content"], key, at, answer)
        messages.append(Message(message["role"], content))
    if key in ANSWER_KEYS and (len(messages) != 1 or messages[0].role != "assistant"):
        raise ValueError(f"{where}: field {key!r} must hold exactly one assistant message, got "
                         f"{', '.join(m.role for m in messages)}")  # fmt: skip
    if key == "messages" and (messages[-1].role != "assistant" or len(messages) < 2):
        raise ValueError(f"{where}: 'messages' must end with an assistant turn after at least one other message, "
                         f"got roles {', '.join(m.role for m in messages)}")  # fmt: skip
    return tuple(messages)


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
    if "text" in record and "prompt" not in record:
        raise ValueError(f"{where}: key 'text' marks TRL's language-modelling format, which is not supported: "
                         f"{ACCEPTED}")  # fmt: skip
    if "messages" in record:
        others = sorted({"prompt", *ANSWER_KEYS} & record.keys())
        if others:
            raise ValueError(f"{where}: key 'messages' cannot be mixed with {', '.join(map(repr, others))}: {ACCEPTED}")
        messages = _messages(record["messages"], "messages", where)
        return Example(messages[:-1], messages[-1].content, history_loss=True)
    if "prompt" not in record:
        if "chosen" in record and "rejected" in record:
            raise ValueError(f"{where}: 'chosen' and 'rejected' without 'prompt' are TRL's implicit-prompt "
                             "preference format, which is not supported: expected a key 'prompt'")  # fmt: skip
        raise ValueError(f"{where}: missing key 'prompt' (accepted formats: prompt/completion, "
                         "prompt/chosen/rejected, messages)")  # fmt: skip
    conversational = isinstance(record["prompt"], list)
    prompt = _field(record, "prompt", where, conversational)
    if "label" in record:
        raise ValueError(f"{where}: key 'label' marks TRL's unpaired preference format (prompt/completion/label), "
                         "which is not supported: expected prompt/completion or prompt/chosen/rejected")  # fmt: skip
    if "completion" in record and ("chosen" in record or "rejected" in record):
        raise ValueError(f"{where}: key 'completion' cannot be mixed with 'chosen' or 'rejected': expected "
                         "prompt/completion or prompt/chosen/rejected")  # fmt: skip

    def answer(key: str) -> str:
        value = _field(record, key, where, conversational)
        return value if isinstance(value, str) else value[0].content

    if "completion" in record:
        return Example(prompt, answer("completion"))
    if "chosen" in record and "rejected" in record:
        chosen, rejected = answer("chosen"), answer("rejected")
        if chosen == rejected:
            raise ValueError(f"{where}: chosen and rejected are identical ({_short(chosen)}): expected a rejected "
                             "answer that differs from the chosen one")  # fmt: skip
        return Example(prompt, chosen, rejected)
    raise ValueError(f"{where}: expected key 'completion', or both 'chosen' and 'rejected'; "
                     f"got keys {', '.join(map(repr, record))}")  # fmt: skip


def _format(example: Example) -> str:
    if example.history_loss:
        return "messages"
    kind = "prompt/completion" if example.rejected is None else "prompt/chosen/rejected"
    return kind if isinstance(example.prompt, str) else f"conversational {kind}"


def _check_path(name: str, path: object) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name}={path!r} is {type(path).__name__}: expected a path to a JSONL file")
    if "\0" in os.fspath(path):  # the operating system cannot open such a name
        raise ValueError(f"{name}={os.fspath(path)!r} holds a NUL character: expected a path to a JSONL file")


def load_jsonl(path: str | os.PathLike) -> list[Example]:
    """Read a JSONL file in one of TRL's formats (see the module doc); blank lines are skipped.

    Lines end at ``"\\n"`` only (a JSON string may hold U+2028), and are checked one at a time, each before it is
    parsed, so a huge or endless file is refused early. Errors name the file and the line.
    """
    _check_path("path", path)
    with contextlib.suppress(OSError):  # a missing file is reported below, as before
        refuse_irregular(path, "data file")  # a FIFO given as --data would hang the reader
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
                prompt = example.prompt if isinstance(example.prompt, str) else [m.content for m in example.prompt]
                total += sum(map(len, prompt)) + len(example.completion) + len(example.rejected or "")
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
