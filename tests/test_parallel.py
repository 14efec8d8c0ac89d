"""Work spread over cores: thread_map keeps order and errors; in_background gives the same results in workers as
here, raises a task's error where its result is asked for, and refuses bad worker counts."""

from __future__ import annotations

import math
import multiprocessing
import operator
import os
import time

import pytest

from iftgym.parallel import MAX_WORKERS, WorkerPool, available_cores, check_workers, in_background, thread_map


def test_thread_map_keeps_the_order_and_raises_the_first_error() -> None:
    assert thread_map(lambda x: x * x, range(20), threads=2) == [x * x for x in range(20)]
    assert thread_map(str, [], threads=4) == []
    with pytest.raises(ValueError, match="math domain error"):
        thread_map(math.sqrt, [4.0, -1.0, 9.0], threads=2)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_in_background_gives_the_same_results_wherever_tasks_run(workers: int) -> None:
    tasks = {("pow", base): (operator.pow, (base, 3)) for base in range(5)}
    tasks["sqrt"] = (math.sqrt, (-1.0,))
    with in_background(tasks, workers) as result:
        assert [result(("pow", base)) for base in reversed(range(5))] == [64, 27, 8, 1, 0]
        assert result(("pow", 2)) == 8  # asked again: the same answer
        with pytest.raises(ValueError, match="math domain error"):  # the task's own error, where it is asked for
            result("sqrt")


def test_worker_counts_are_checked() -> None:
    assert check_workers(None) == available_cores() - 1 >= 0
    assert check_workers(0) == 0
    for bad in (-1, MAX_WORKERS + 1):
        with pytest.raises(ValueError, match=rf"^workers={bad} is out of range"):
            check_workers(bad)
    with pytest.raises(ValueError, match=r"^workers=1\.5 is float: expected an integer"), in_background({}, 1.5):
        pass


def test_leaving_on_an_error_ends_the_workers_at_once() -> None:
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="stop"), in_background({i: (time.sleep, (60,)) for i in range(2)}, 2):
        raise RuntimeError("stop")
    assert time.perf_counter() - start < 30  # not the minute the tasks would take


def test_without_workers_tasks_run_here_when_asked_for() -> None:
    with in_background({"pid": (os.getpid, ())}, workers=0) as result:
        assert result("pid") == os.getpid()


def test_a_worker_pool_stays_alive_between_batches_and_gives_the_same_results() -> None:
    def children() -> set[int]:
        return {process.pid for process in multiprocessing.active_children()}

    before, pool = children(), WorkerPool(1)
    try:
        pool.warm()
        mine = children() - before
        assert len(mine) == 1  # the worker started
        for base in range(3):  # each batch: the same worker, no new process started
            tasks = {power: (operator.pow, (base, power)) for power in range(4)}
            with in_background(tasks, pool=pool) as result:
                assert [result(power) for power in range(4)] == [base**power for power in range(4)]
            now = children()
            assert mine <= now and not now - before - mine
        with pytest.raises(ValueError, match="math domain error"), in_background({"x": (math.sqrt, (-1.0,))},
                                                                                 pool=pool) as result:  # fmt: skip
            result("x")
        with in_background({"pid": (os.getpid, ())}, pool=pool) as result:
            assert result("pid") == os.getpid()  # a lone task runs here: no trip to the worker
    finally:
        pool.close()
    assert pool.executor() is not None  # a closed pool starts again when asked
    pool.close()
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        pool.warm(imports=("no_such_module",))  # a blocking warm-up raises its import's error
    pool.warm(block=False, imports=("json",))  # returns while the worker starts, importing json too
    assert len(children() - before) == 1
    with in_background({"pid": (os.getpid, ()), "twice": (operator.mul, (2, 21))}, pool=pool) as result:
        assert result("twice") == 42
    pool.close()
    assert WorkerPool(0).executor() is None  # no workers: every task runs here
