"""Token tasks: addition, sorting, Frozen Lake as text, and making tasks by name."""

from __future__ import annotations

import numpy as np
import pytest

from iftgym.worlds.tokens.tasks import (
    AdditionTask,
    FrozenLakeTextTask,
    SortTask,
    make_task,
    map_prompt,
    walk_reaches_goal,
)


def test_addition_answers_are_reversed_sums_and_rejected_ones_err_early():
    task = AdditionTask(digits=3, n_train=50, n_test=20, seed=0)
    assert not {ex.prompt for ex in task.train} & {ex.prompt for ex in task.test}
    for ex in task.train:
        a, b = map(int, ex.prompt.rstrip("=").split("+"))
        assert ex.completion == str(a + b).zfill(4)[::-1]
        assert task.reward(ex.prompt, ex.completion) == 1.0
        assert task.reward(ex.prompt, ex.rejected) == 0.0
        wrong = [i for i, (x, y) in enumerate(zip(ex.completion, ex.rejected)) if x != y]
        assert len(wrong) == 1 and wrong[0] < 2


def test_sort_task():
    task = SortTask(length=4, n_train=30, n_test=5)
    ex = task.train[0]
    assert ex.completion == "".join(sorted(ex.prompt[:-1])) and ex.prompt.endswith("=")
    assert task.reward(ex.prompt, ex.completion) == 1.0 and task.reward(ex.prompt, ex.rejected) == 0.0


def test_frozen_lake_text_task_solves_maps_and_holds_out_unseen_ones():
    task = FrozenLakeTextTask(size=4, n_train=30, n_test=10, seed=0)
    assert not {ex.prompt for ex in task.train} & {ex.prompt for ex in task.test}
    for ex in task.train + task.test:
        assert task.reward(ex.prompt, ex.completion) == 1.0  # the solver's route reaches G
        # the second route or a noisy expert: longer, or failing
        assert len(ex.rejected) > len(ex.completion) or task.reward(ex.prompt, ex.rejected) == 0.0
    assert set(task.alphabet) == set("SFHG|:LDRU")


def test_walk_semantics():
    rows = ("SFH", "FFF", "HFG")
    assert map_prompt(rows) == "SFH|FFF|HFG:"
    assert walk_reaches_goal(rows, "DRDR") and walk_reaches_goal(rows, "RDRD")
    assert walk_reaches_goal(rows, "LUDRDR")  # bumping into walls leaves the position unchanged
    assert not walk_reaches_goal(rows, "RR")  # into the hole
    assert not walk_reaches_goal(rows, "DR")  # stops short of G
    assert not walk_reaches_goal(rows, "DXRDR")  # not a move


def test_make_task_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match=r"unknown task 'chess'.*addition"):
        make_task("chess")
    with pytest.raises(ValueError, match=r"task 'sort'.*digits"):
        make_task("sort", digits=3)
    # mistyped options (as --task-arg passes them) fail clearly, not with a TypeError deep inside
    with pytest.raises(ValueError, match=r"task 'addition': digits='two' is str: expected an integer"):
        make_task("addition", digits="two")
    with pytest.raises(ValueError, match=r"digits=2.0 is float: expected an integer"):
        make_task("addition", digits=2.0)
    with pytest.raises(ValueError, match=r"p_hole=None is NoneType: expected a number"):
        make_task("frozen-lake", p_hole=None)
    assert make_task("sort", length=np.int64(2), n_train=3, n_test=1).train[0].prompt.endswith("=")


# -- bad arguments end in one clear line, before anything large is allocated or any long loop starts ---------------
@pytest.mark.parametrize(
    ("task", "kwargs", "message"),
    [
        (AdditionTask, {"n_train": 10**12}, r"n_train=1000000000000 is out of range: expected at most 1000000$"),
        (AdditionTask, {"digits": 9, "n_train": 900_000, "n_test": 200_000}, r"n_train \+ n_test = 900000 \+ 200000"),
        (AdditionTask, {"digits": 2.5}, r"digits=2\.5 is float: expected an integer$"),
        (AdditionTask, {"digits": True}, r"digits=True is bool: expected an integer$"),
        (AdditionTask, {"n_train": 2.5}, r"n_train=2\.5 is float: expected an integer$"),
        (AdditionTask, {"n_test": 0}, r"n_test=0 is out of range: expected at least 1$"),
        (AdditionTask, {"seed": -1}, r"seed=-1 is out of range: expected at least 0$"),
        (AdditionTask, {"seed": "x"}, r"seed='x' is str: expected an integer$"),
        (SortTask, {"length": 10**6}, r"length=1000000 is out of range: expected at most 64$"),
        (SortTask, {"length": 2.0}, r"length=2\.0 is float: expected an integer$"),
        (SortTask, {"length": 64, "n_train": 10**12}, r"n_train=1000000000000 is out of range"),
        (FrozenLakeTextTask, {"size": True}, r"size=True is bool: expected an integer$"),
        (FrozenLakeTextTask, {"size": 2.5}, r"size=2\.5 is float: expected an integer$"),
        (FrozenLakeTextTask, {"size": 9}, r"size=9 is out of range: expected at most 8$"),
        (FrozenLakeTextTask, {"p_hole": float("nan")}, r"p_hole=nan is out of range: expected a finite number$"),
        (FrozenLakeTextTask, {"p_hole": 1.0}, r"p_hole=1\.0 is out of range: expected 0 <= p_hole < 1$"),
        (FrozenLakeTextTask, {"n_train": 10**12}, r"n_train=1000000000000 is out of range: expected at most 100000$"),
        (FrozenLakeTextTask, {"seed": -1}, r"seed=-1 is out of range: expected at least 0$"),
        (FrozenLakeTextTask, {"size": 2, "n_train": 50, "n_test": 1},
         r"asked for 50 \+ 1 distinct 2x2 maps with p_hole=0\.2, but at most 4 exist$"),
        (FrozenLakeTextTask, {"p_hole": 0.0, "n_train": 2, "n_test": 1},
         r"asked for 2 \+ 1 distinct 4x4 maps with p_hole=0\.0, but at most 1 exist$"),
    ],
)  # fmt: skip
def test_task_constructors_refuse_bad_arguments(task, kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        task(**kwargs)


class _Deadline:
    """Fail a block that runs longer than ``seconds`` (a hang would otherwise hold the test suite forever)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        import signal

        def expire(*_):
            raise TimeoutError(f"still running after {self.seconds} s")

        signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *_) -> None:
        import signal

        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def test_frozen_lake_task_with_a_hopeless_hole_rate_ends_quickly_with_a_clear_error():
    # `iftgym lm --task frozen-lake --task-arg p_hole=0.99` used to resample maps forever
    with _Deadline(30), pytest.raises(ValueError) as info:
        make_task("frozen-lake", p_hole=0.99)
    assert str(info.value) == (
        "could not draw a solvable 4x4 map with p_hole=0.99: none of 1000000 random maps had a path from S to G "
        "that avoids the holes; lower p_hole"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # only 3 distinct solvable 2x2 maps exist: the test split cannot find 2 that are not training maps
        ({"size": 2, "n_train": 2, "n_test": 2},
         r"could not draw 2 distinct 2x2 test maps with p_hole=0\.2: \d+ seeds \(\d+ random maps\) gave only 1 of them "
         r"\(test maps never repeat a training map\); ask for fewer maps \(n_train, n_test\) or a larger size$"),
        # each map is solvable but rare: the task's budget of random maps runs out
        ({"size": 4, "p_hole": 0.9, "n_train": 500, "n_test": 100},
         r"could not draw 500 distinct 4x4 training maps with p_hole=0\.9: \d+ seeds \(1000000 random maps\) gave "
         r"only \d+ of them; lower p_hole$"),
    ],
)  # fmt: skip
def test_frozen_lake_task_distinct_map_search_is_bounded(kwargs, message):
    with _Deadline(30), pytest.raises(ValueError, match=f"^{message}"):
        FrozenLakeTextTask(**kwargs)


def test_frozen_lake_task_draws_the_maps_it_always_drew():
    from iftgym.worlds.frozen_lake.maps import random_map

    def reference(size, p_hole, seed, n_train, n_test):  # the loop the task used before its draws were bounded
        maps = {}
        for base, count in ((seed * 10**6, n_train), (seed * 10**6 + 500_000, n_test)):
            start, i = len(maps), 0
            while len(maps) - start < count:
                maps.setdefault(random_map(size, p_hole, seed=base + i), None)
                i += 1
        return [map_prompt(rows) for rows in maps]

    for size, p_hole, seed, n_train, n_test in [(4, 0.2, 0, 60, 20), (3, 0.2, 1, 30, 10), (6, 0.5, 2, 20, 5)]:
        task = FrozenLakeTextTask(size, p_hole, n_train, n_test, seed)
        assert [ex.prompt for ex in task.train + task.test] == reference(size, p_hole, seed, n_train, n_test)


def test_addition_reward_refuses_a_prompt_that_is_no_addition():
    task = AdditionTask(digits=1, n_train=3, n_test=1)
    assert task.reward("1+2=", "30") == 1.0
    with pytest.raises(ValueError, match=r"^prompt '1\+2\+3=' is not an addition prompt: expected 'A\+B='"):
        task.reward("1+2+3=", "6")
