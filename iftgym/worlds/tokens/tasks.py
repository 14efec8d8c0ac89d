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
* ``jsonl``: user data in TRL's standard formats (:mod:`iftgym.worlds.tokens.jsonl`).

Tasks are looked up by name in :data:`TASKS`; :func:`register_task` adds a user's own (or a plugin's, through the
entry-point group ``iftgym.tasks``).

Rejected answers of the generated tasks change one early character of the target ("one early mistake").
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from iftgym.registry import Registry
from iftgym.validate import at_least, between, like_default
from iftgym.worlds.frozen_lake.maps import draw_solvable_map, max_map_draws, no_solvable_map
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP
from iftgym.worlds.tokens.tokenizer import Prompt, prompt_characters

MOVE_LETTERS = "LDRU"  # Gymnasium's action order: LEFT, DOWN, RIGHT, UP
ROW_SEP, MAP_END = "|", ":"
# Generated tasks hold every example in memory and write each in Python: cap their number (the defaults are 2200).
MAX_EXAMPLES = 1_000_000
MAX_MAPS = 100_000  # per split of frozen-lake: each map is solved exactly (about a millisecond each)
MAX_MAP_SEEDS = 400_000  # seeds a split of frozen-lake tries at most (test seeds start 500_000 after the training ones)
MAP_SEEDS_WITHOUT_NEW = 20_000  # ... and it stops earlier when this many seeds in a row gave no new map


@dataclass(frozen=True)
class Example:
    """One prompt with its target answer and, for preference data, a worse answer.

    ``prompt`` is a string or a conversation (a tuple of :class:`Message`), whose answer is the assistant's next
    turn; ``history_loss``: a demonstration also trains on the assistant turns inside its conversation prompt (TRL's
    ``messages`` format, where every assistant turn is a target)."""

    prompt: Prompt
    completion: str
    rejected: str | None = None
    history_loss: bool = False


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
        texts = (t for ex in (*self.train, *self.test)
                 for t in (prompt_characters(ex.prompt), ex.completion, ex.rejected or ""))  # fmt: skip
        return "".join(sorted(set("".join(texts))))

    @property
    def max_answer_len(self) -> int:
        """Longest answer (in characters) a policy may write before it must stop."""
        return max(len(t) for ex in (*self.train, *self.test) for t in (ex.completion, ex.rejected or ""))


def _check_sizes(n_train: int, n_test: int, seed: int, most: int = MAX_EXAMPLES) -> None:
    """Counts of examples, each at least 1 and together at most ``most``, and a seed (an integer >= 0)."""
    at_least("n_train", n_train, 1, high=most)
    at_least("n_test", n_test, 1, high=most)
    if n_train + n_test > most:
        raise ValueError(f"n_train + n_test = {n_train} + {n_test} is out of range: expected at most {most} examples "
                         "in all (tiny models train on far fewer)")  # fmt: skip
    at_least("seed", seed, 0)


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
    _check_sizes(n_train, n_test, seed)
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
        at_least("digits", digits, 1, high=9)
        self.digits = int(digits)
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
        terms = prompt.rstrip("=").split("+") if isinstance(prompt, str) else []
        if len(terms) != 2 or not all(term.isdigit() and term.isascii() for term in terms):
            raise ValueError(f"prompt {prompt!r} is not an addition prompt: expected 'A+B=' with digits A and B")
        return float(answer == self.solve(int(terms[0]), int(terms[1])))


class SortTask(Task):
    """Sort ``length`` digits: ``"3142="`` -> ``"1234"``."""

    name = "sort"

    def __init__(self, length: int = 6, n_train: int = 2000, n_test: int = 200, seed: int = 0) -> None:
        at_least("length", length, 1, high=64)
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


@functools.lru_cache(maxsize=4096)
def _model(rows: tuple[str, ...]) -> FrozenLakeMDP:
    return FrozenLakeMDP.from_map(rows)


def walk_reaches_goal(rows: Sequence[str], moves: str) -> bool:
    """Whether ``moves`` (letters of ``L D R U``) lead from S to G on ``rows`` without entering a hole.

    Moves into a wall leave the position unchanged, as in Gymnasium; moves after reaching G are not made.
    """
    valid = [MOVE_LETTERS.index(letter) for letter in itertools.takewhile(MOVE_LETTERS.__contains__, moves)]
    model = _model(tuple(rows))
    return model.tile(model.walk(valid).states[-1]) == "G"  # a letter that is no move ends the walk


def _with_slip(model: FrozenLakeMDP, policy: np.ndarray, slip: int, wrong: int) -> list[int]:
    """Follow ``policy`` from S, but take action ``wrong`` at step ``slip``; stop at a hole, G or n_states moves."""
    state, moves = model.start, []
    while not model.is_terminal(state) and len(moves) < model.n_states:
        action = wrong if len(moves) == slip else int(policy[state])
        moves.append(action)
        state = model.step(state, action, 0.0)
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


def _distinct_maps(size: int, p_hole: float, seed: int, n_train: int, n_test: int) -> list[tuple[str, ...]]:
    """``n_train`` distinct solvable maps from seeds ``seed * 10**6 + i``, then ``n_test`` more from seeds
    ``seed * 10**6 + 500_000 + i`` that repeat none of them, each seed's map as :func:`random_map` draws it.

    Bounded three ways, so that no request runs for long: a split tries at most ``MAX_MAP_SEEDS`` seeds and stops
    after ``MAP_SEEDS_WITHOUT_NEW`` seeds in a row without a new map (too few distinct maps exist), and all the
    seeds together draw at most ``max(max_map_draws, 1000 * maps asked)`` random maps (a p_hole too high).
    """
    maps: dict[tuple[str, ...], None] = {}
    per_map = max_map_draws(size, size)
    budget, drawn = max(per_map, 1000 * (n_train + n_test)), 0
    for split, base, count in (("training", seed * 10**6, n_train), ("test", seed * 10**6 + 500_000, n_test)):
        start, last_new = len(maps), 0
        for i in itertools.count():
            if len(maps) - start == count:
                break
            if i == MAX_MAP_SEEDS or i - last_new == MAP_SEEDS_WITHOUT_NEW or drawn >= budget:
                found = f"{len(maps) - start} of them" + " (test maps never repeat a training map)" * (split == "test")
                advice = "lower p_hole" if drawn >= budget else "ask for fewer maps (n_train, n_test) or a larger size"
                raise ValueError(f"could not draw {count} distinct {size}x{size} {split} maps with p_hole={p_hole}: "
                                 f"{i} seeds ({drawn} random maps) gave only {found}; {advice}")  # fmt: skip
            rng = np.random.default_rng(base + i)
            rows, n = draw_solvable_map(size, size, p_hole, rng, min(per_map, budget - drawn))
            drawn += n
            if rows is None and n == per_map:  # this seed alone drew as many maps as random_map does
                raise no_solvable_map(size, size, p_hole, n)
            if rows is not None and rows not in maps:
                maps[rows], last_new = None, i
    return list(maps)


class FrozenLakeTextTask(Task):
    """Random ``size`` x ``size`` maps as text prompts; answers are move strings over ``L D R U``.

    Train maps use seeds ``seed * 10**6 + i``, test maps seeds from ``seed * 10**6 + 500_000`` on, skipping any
    map already in the training set, so test accuracy measures generalisation to unseen maps.
    """

    name = "frozen-lake"

    def __init__(self, size: int = 4, p_hole: float = 0.2, n_train: int = 500, n_test: int = 100, seed: int = 0):
        at_least("size", size, 2, high=8)
        between("p_hole", p_hole, 0, 1, include_high=False)
        _check_sizes(n_train, n_test, seed, most=MAX_MAPS)
        size = int(size)
        # each cell but S and G a hole or not (more than the solvable maps), or the one map without holes
        capacity = 2 ** (size * size - 2) if p_hole > 0 else 1
        if n_train + n_test > capacity:
            raise ValueError(f"asked for {n_train} + {n_test} distinct {size}x{size} maps with p_hole={p_hole}, "
                             f"but at most {capacity} exist")  # fmt: skip
        self.size = size
        rng = np.random.default_rng(seed)
        maps = _distinct_maps(size, p_hole, seed, n_train, n_test)
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


def _check_task(name: str, task: object) -> None:
    if not (isinstance(task, type) and issubclass(task, Task)):
        raise ValueError(f"task {name!r} must be a subclass of iftgym.worlds.tokens.Task, got {task!r}")


TASKS: Registry[type[Task]] = Registry("task", "iftgym.tasks", _check_task)


def register_task(name: str, task: type[Task], *, replace: bool = False) -> type[Task]:
    """Make a :class:`Task` subclass available by name (``iftgym lm --task NAME``, :func:`make_task`)."""
    return TASKS.register(name, task, replace=replace)


def make_task(name: str, **kwargs: Any) -> Task:
    """Build a task by name; ``kwargs`` go to its constructor (``make_task("addition", digits=2)``)."""
    task = TASKS.get(name)
    signature = inspect.signature(task)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise ValueError(f"task {name!r}: {err}") from None
    for key, value in kwargs.items():
        like_default(f"task {name!r}: {key}", value, signature.parameters[key].default)
    return task(**kwargs)


for _task in (AdditionTask, SortTask, FrozenLakeTextTask):
    register_task(_task.name, _task)
