"""User data for the token world: JSONL files in TRL's standard formats, one JSON object a line.

``{"prompt", "completion"}`` (SFT, IFT) or ``{"prompt", "chosen", "rejected"}`` (DPO, ORPO; the chosen answer doubles
as the demonstration). The task's reward is exact match with any reference answer of the prompt. Every error names
the file and the line.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from iftgym.worlds.tokens.tasks import Example, Task, register_task

MAX_EXAMPLE_CHARS = 1000


def shipped_data(name: str) -> Path:
    """Path of a sample file shipped in ``envs/tokens`` (``"reverse"`` -> ``.../tokens/reverse.jsonl``)."""
    return Path(str(resources.files("iftgym.data") / "tokens" / f"{name}.jsonl"))


def _field(record: dict, key: str, where: str) -> str:
    value = record[key]
    if isinstance(value, list):
        raise ValueError(f"{where}: field {key!r} is a list of messages (conversational format), which is not "
                         "supported: expected a string")  # fmt: skip
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {key!r} is {type(value).__name__}, expected a string")
    return value


def parse_example(line: str, where: str) -> Example:
    """One JSONL line as an :class:`Example`; ``where`` (``"file, line 3"``) prefixes every error."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "prompt" not in record:
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
        example = Example(prompt, _field(record, "completion", where))
    elif "chosen" in record and "rejected" in record:
        example = Example(prompt, _field(record, "chosen", where), _field(record, "rejected", where))
    else:
        raise ValueError(f"{where}: expected key 'completion', or both 'chosen' and 'rejected'; "
                         f"got keys {', '.join(map(repr, record))}")  # fmt: skip
    longest = max(len(example.prompt), len(example.completion), len(example.rejected or ""))
    if longest > MAX_EXAMPLE_CHARS:
        raise ValueError(f"{where}: a field is {longest} characters long, at most {MAX_EXAMPLE_CHARS} are supported")
    return example


def load_jsonl(path: str | os.PathLike) -> list[Example]:
    """Read a JSONL file in TRL's prompt/completion or prompt/chosen/rejected format; blank lines are skipped.

    Errors name the file and the line.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")  # not splitlines(): JSON strings may hold U+2028
    except OSError as err:
        raise ValueError(f"cannot read data file {str(path)!r}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read data file {str(path)!r}: it is not UTF-8 text") from None
    examples = [parse_example(line, f"{path}, line {i}") for i, line in enumerate(lines, 1) if line.strip()]
    if not examples:
        raise ValueError(f"data file {str(path)!r} has no examples: expected one JSON object per line")
    return examples


class JSONLTask(Task):
    """User data from a JSONL file (or the name of a file shipped in ``envs/tokens``); the test split is
    ``test_path`` when given, else the training examples themselves (there is no held-out split then)."""

    name = "jsonl"

    def __init__(self, path: str | os.PathLike, test_path: str | os.PathLike | None = None) -> None:
        self.path = self._resolve(path)
        self.train = load_jsonl(self.path)
        self.test = load_jsonl(self._resolve(test_path)) if test_path is not None else self.train

    @staticmethod
    def _resolve(path: str | os.PathLike) -> Path:
        if not Path(path).exists() and shipped_data(str(path)).is_file():
            return shipped_data(str(path))
        return Path(path)


register_task(JSONLTask.name, JSONLTask)
