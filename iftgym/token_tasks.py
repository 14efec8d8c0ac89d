"""Token-generation tasks: prompts, target answers, sub-optimal answers and the task's reward.

A task is two lists of :class:`Example` (``train`` and ``test``) plus a reward for any (prompt, answer) pair.
Every task here is generated in code or read from a local file, so nothing is downloaded:

* ``addition``: ``"123+045="`` -> the sum written least-significant digit first (``"8610"``, zero-padded), so each
  digit depends on the carry of the digits before it and one early mistake spoils the rest; exact-match reward.
* ``sort``: ``"3142="`` -> ``"1234"``; exact-match reward.
* ``frozen-lake``: a random Frozen Lake map as text (``"SFFF|FHFH|FFFH|HFFG:"``) -> a move string over
  ``L D R U``. The target is the exact solver's optimal route, the rejected answer the map's second route
  (:meth:`FrozenLakeMDP.suboptimal_demonstration`) when it is longer, else a noisy expert that is strictly worse
  (longer or failing); reward 1 when the moves reach G without entering a hole. Test maps come from other seeds
  and never repeat a training map.
* ``jsonl``: user data in TRL's standard formats, one JSON object a line: ``{"prompt", "completion"}`` (SFT, IFT)
  or ``{"prompt", "chosen", "rejected"}`` (DPO, ORPO; the chosen answer doubles as the demonstration). The reward
  is exact match with any reference answer of the prompt.

Rejected answers of the generated tasks change one early character of the target ("one early mistake").
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from iftgym.frozen_lake import FrozenLakeMDP
from iftgym.maps import MOVES, random_map
from iftgym.validate import at_least, between, like_default

MOVE_LETTERS = "LDRU"  # Gymnasium's action order: LEFT, DOWN, RIGHT, UP
ROW_SEP, MAP_END = "|", ":"


@dataclass(frozen=True)
class Example:
    """One prompt with its target answer and, for preference data, a worse answer."""

    prompt: str
    completion: str
    rejected: str | None = None


class Task:
    """Base class: ``train`` and ``test`` examples, the characters they use, and a reward.

    The default reward is exact match with a reference answer of the prompt (any split).
    """

    name: ClassVar[str]
    train: list[Example]
    test: list[Example]

    def references(self) -> dict[str, list[str]]:
        """Every target answer of every prompt (both splits), in data order."""
        if not hasattr(self, "_references"):
            self._references: dict[str, list[str]] = {}
            for ex in (*self.train, *self.test):
                self._references.setdefault(ex.prompt, []).append(ex.completion)
        return self._references

    def reference(self, prompt: str) -> str:
        """The target answer of a known prompt (the first one listed, when the data has several)."""
        if prompt not in self.references():
            raise ValueError(f"prompt {prompt!r} is not part of task {self.name!r}")
        return self.references()[prompt][0]

    def reward(self, prompt: str, answer: str) -> float:
        """Reward of a finished answer: 1.0 for an exact match with a reference answer, else 0.0."""
        return float(answer in self.references().get(prompt, ()))

    def split(self, name: str) -> list[Example]:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}: expected 'train' or 'test'")
        return self.train if name == "train" else self.test

    @property
    def alphabet(self) -> str:
        """Every character of every prompt and answer, sorted."""
        texts = (t for ex in (*self.train, *self.test) for t in (ex.prompt, ex.completion, ex.rejected or ""))
        return "".join(sorted(set("".join(texts))))

    @property
    def max_answer_len(self) -> int:
        """Longest answer (in characters) a policy may write before it must stop."""
        return max(len(t) for ex in (*self.train, *self.test) for t in (ex.completion, ex.rejected or ""))


def _check_sizes(n_train: int, n_test: int) -> None:
    at_least("n_train", n_train, 1)
    at_least("n_test", n_test, 1)


def corrupt_early(answer: str, alphabet: str, rng: np.random.Generator) -> str:
    """``answer`` with one character of its first half replaced by another character of ``alphabet``."""
    i = int(rng.integers(0, max(1, (len(answer) + 1) // 2)))
    choices = [c for c in alphabet if c != answer[i]]
    return answer[:i] + choices[int(rng.integers(len(choices)))] + answer[i + 1 :]


def _generated_splits(
    draw: Callable[[np.random.Generator], Any],
    example: Callable[[Any, np.random.Generator], Example],
    capacity: int,
    n_train: int,
    n_test: int,
    seed: int,
) -> tuple[list[Example], list[Example]]:
    """Train and test examples of ``n_train + n_test`` distinct problems drawn by ``draw(rng)`` (``capacity``: how
    many problems exist); ``example(problem, rng)`` writes each one once all are drawn, train problems first."""
    _check_sizes(n_train, n_test)
    if n_train + n_test > capacity:
        raise ValueError(f"asked for {n_train} + {n_test} distinct problems, but only {capacity} exist")
    rng = np.random.default_rng(seed)
    problems: dict[Any, None] = {}
    while len(problems) < n_train + n_test:
        problems.setdefault(draw(rng), None)
    examples = [example(problem, rng) for problem in problems]
    return examples[:n_train], examples[n_train:]


class AdditionTask(Task):
    """``digits``-digit addition, answer least-significant digit first, zero-padded to ``digits + 1``."""

    name = "addition"

    def __init__(self, digits: int = 3, n_train: int = 2000, n_test: int = 200, seed: int = 0) -> None:
        between("digits", digits, 1, 9)
        self.digits = digits
        top = 10**digits
        self.train, self.test = _generated_splits(
            lambda rng: tuple(int(x) for x in rng.integers(0, top, 2)), self._example, top**2, n_train, n_test, seed
        )

    def solve(self, a: int, b: int) -> str:
        return f"{a + b:0{self.digits + 1}d}"[::-1]

    def _example(self, terms: tuple[int, int], rng: np.random.Generator) -> Example:
        a, b = terms
        answer = self.solve(a, b)
        return Example(f"{a:0{self.digits}d}+{b:0{self.digits}d}=", answer, corrupt_early(answer, "0123456789", rng))

    def reward(self, prompt: str, answer: str) -> float:
        a, b = prompt.rstrip("=").split("+")
        return float(answer == self.solve(int(a), int(b)))


class SortTask(Task):
    """Sort ``length`` digits: ``"3142="`` -> ``"1234"``."""

    name = "sort"

    def __init__(self, length: int = 6, n_train: int = 2000, n_test: int = 200, seed: int = 0) -> None:
        between("length", length, 1, 64)
        self.train, self.test = _generated_splits(
            lambda rng: "".join(map(str, rng.integers(0, 10, length))), self._example, 10**length, n_train, n_test, seed
        )

    @staticmethod
    def _example(digits: str, rng: np.random.Generator) -> Example:
        answer = "".join(sorted(digits))
        return Example(f"{digits}=", answer, corrupt_early(answer, "0123456789", rng))

    def reward(self, prompt: str, answer: str) -> float:
        return float(answer == "".join(sorted(prompt.rstrip("="))))


def map_prompt(rows: Sequence[str]) -> str:
    """A Frozen Lake map as a prompt: ``"SFFF|FHFH|FFFH|HFFG:"``."""
    return ROW_SEP.join(rows) + MAP_END


def walk_reaches_goal(rows: Sequence[str], moves: str) -> bool:
    """Whether ``moves`` (letters of ``L D R U``) lead from S to G on ``rows`` without entering a hole.

    Moves into a wall leave the position unchanged, as in Gymnasium; moves after reaching G are not made.
    """
    row, col = next((r, c) for r, line in enumerate(rows) for c, tile in enumerate(line) if tile == "S")
    for letter in moves:
        if letter not in MOVE_LETTERS:
            return False
        dr, dc = MOVES[MOVE_LETTERS.index(letter)]
        row, col = min(max(row + dr, 0), len(rows) - 1), min(max(col + dc, 0), len(rows[0]) - 1)
        if rows[row][col] == "H":
            return False
        if rows[row][col] == "G":
            return True
    return False


def _with_slip(model: FrozenLakeMDP, policy: np.ndarray, slip: int, wrong: int) -> list[int]:
    """Follow ``policy`` from S, but take action ``wrong`` at step ``slip``; stop at a hole, G or n_states moves."""
    state, moves = model.start, []
    while not model.is_terminal(state) and len(moves) < model.n_states:
        action = wrong if len(moves) == slip else int(policy[state])
        moves.append(action)
        state = int(np.argmax(model.P[state, action]))
    return moves


def noisy_expert(model: FrozenLakeMDP, rng: np.random.Generator) -> str:
    """The optimal route with one wrong move, then optimal moves from wherever it led: the first slip, in a
    random order of (step, action), that makes the answer strictly worse (longer, or failing)."""
    policy = model.optimal_policy().argmax(axis=1)
    best = model.optimal_demonstration().actions
    slips = [(i, a) for i in range(len(best)) for a in range(model.n_actions) if a != best[i]]
    for index in rng.permutation(len(slips)):
        moves = _with_slip(model, policy, *slips[index])
        letters = "".join(MOVE_LETTERS[a] for a in moves)
        if len(moves) > len(best) or not walk_reaches_goal(model.desc, letters):
            return letters
    raise ValueError(f"no single wrong move makes the route of map {model.desc} worse")  # S next to a wall: never


class FrozenLakeTextTask(Task):
    """Random ``size`` x ``size`` maps as text prompts; answers are move strings over ``L D R U``.

    Train maps use seeds ``seed * 10**6 + i``, test maps seeds from ``seed * 10**6 + 500_000`` on, skipping any
    map already in the training set, so test accuracy measures generalisation to unseen maps.
    """

    name = "frozen-lake"

    def __init__(self, size: int = 4, p_hole: float = 0.2, n_train: int = 500, n_test: int = 100, seed: int = 0):
        _check_sizes(n_train, n_test)
        between("size", size, 2, 8)
        self.size = size
        rng = np.random.default_rng(seed)
        maps: dict[tuple[str, ...], None] = {}
        for base, count in ((seed * 10**6, n_train), (seed * 10**6 + 500_000, n_test)):
            start, i = len(maps), 0
            while len(maps) - start < count:
                if i >= 400_000:
                    raise ValueError(f"could not draw {count} distinct {size}x{size} maps with p_hole={p_hole}")
                maps.setdefault(random_map(size, p_hole, seed=base + i), None)
                i += 1
        examples = [self._example(rows, rng) for rows in maps]
        self.train, self.test = examples[:n_train], examples[n_train:]

    @staticmethod
    def _example(rows: tuple[str, ...], rng: np.random.Generator) -> Example:
        model = FrozenLakeMDP.from_map(rows)
        best = model.optimal_demonstration().actions
        second = model.suboptimal_demonstration()
        if second is not None and len(second) > len(best):
            worse = "".join(MOVE_LETTERS[a] for a in second.actions)
        else:  # no second route, or one as short as the best: a noisy expert instead
            worse = noisy_expert(model, rng)
        return Example(map_prompt(rows), "".join(MOVE_LETTERS[a] for a in best), worse)

    @property
    def alphabet(self) -> str:
        return "".join(sorted(set("SFHG" + ROW_SEP + MAP_END + MOVE_LETTERS)))

    @property
    def max_answer_len(self) -> int:
        return self.size * self.size

    def reward(self, prompt: str, answer: str) -> float:
        return float(walk_reaches_goal(prompt.rstrip(MAP_END).split(ROW_SEP), answer))


# ---- user data: JSONL in TRL's formats --------------------------------------------------------------------
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


TASKS: dict[str, type[Task]] = {
    "addition": AdditionTask,
    "sort": SortTask,
    "frozen-lake": FrozenLakeTextTask,
    "jsonl": JSONLTask,
}


def make_task(name: str, **kwargs: Any) -> Task:
    """Build a task by name; ``kwargs`` go to its constructor (``make_task("addition", digits=2)``)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}")
    signature = inspect.signature(TASKS[name])
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise ValueError(f"task {name!r}: {err}") from None
    for key, value in kwargs.items():
        like_default(f"task {name!r}: {key}", value, signature.parameters[key].default)
    return TASKS[name](**kwargs)
