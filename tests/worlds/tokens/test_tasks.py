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
