"""Spreading independent work over the cores: how many there are, a map over threads, and tasks run in worker
processes while the caller goes on."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

from iftgym.validate import at_least

Item = TypeVar("Item")
Result = TypeVar("Result")
Key = TypeVar("Key", bound=Hashable)
MAX_WORKERS = 256
Task = tuple[Callable[..., Any], tuple[Any, ...]]  # a picklable top-level function and its arguments


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it, else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_map(function: Callable[[Item], Result], items: Iterable[Item], threads: int | None = None) -> list[Result]:
    """``[function(item) for item in items]``, in ``threads`` threads (default :func:`available_cores`) — worth it
    only where ``function`` spends its time in code that releases the GIL (SuperLU's factorisation, numpy's larger
    operations); results in the order of ``items``, and the first error raised as it would be in the loop."""
    items = list(items)
    threads = min(available_cores() if threads is None else threads, len(items))
    if threads <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, items))


def check_workers(workers: int | None) -> int:
    """``workers`` checked (``0..MAX_WORKERS``), or, when ``None``, one per core but the one this process works on
    (:func:`in_background` runs tasks here too)."""
    workers = available_cores() - 1 if workers is None else workers
    at_least("workers", workers, 0, high=MAX_WORKERS)
    return workers


def _worker_setup() -> None:
    """In a worker: Ctrl-C is the parent's to handle (it ends the workers), and one math thread (torch and BLAS)."""
    import torch
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    threadpool_limits(1)


def _start_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` processes, started with ``spawn`` (no state of this process leaks into them), one math thread each,
    Ctrl-C left to this process."""
    return ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), _worker_setup)


class WorkerPool:
    """Worker processes kept alive between batches of tasks, for callers that run many short batches (the explorers:
    each change retrains its rules at once instead of paying the workers' start-up, a second or two with torch, every
    time). Pass it to :func:`in_background`; :meth:`close` ends the workers (also done when the pool is collected or
    the interpreter exits)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = check_workers(workers)
        self._pool: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor | None:
        """The running pool, started at the first call (``None`` with no workers)."""
        if self._pool is None and self.workers:
            self._pool = _start_pool(self.workers)
        return self._pool

    def warm(self, block: bool = True, imports: tuple[str, ...] = ()) -> None:
        """Start the workers now and have each import torch and the modules ``imports`` (those the first tasks will
        need), so the first batch does not wait for them, and raise an import's error; with ``block=False``, return at
        once while they start (the caller goes on with its own imports; a failed import is then the first task's
        error)."""
        pool = self.executor()
        if pool is not None:
            started = [pool.submit(_warmed, imports) for _ in range(self.workers)]
            if block:
                for future in started:
                    future.result()

    def close(self) -> None:
        """End the workers (a running task is stopped)."""
        if self._pool is not None:
            _terminate_workers(self._pool)
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:
        self.close()


def _warmed(imports: tuple[str, ...] = ()) -> bool:
    """A task that has its worker start (which imports torch: :func:`_worker_setup`) and import ``imports``."""
    for module in imports:
        importlib.import_module(module)
    return True


@contextmanager
def in_background(
    tasks: Mapping[Key, Task], workers: int | None = None, pool: WorkerPool | None = None
) -> Iterator[Callable[[Key], Any]]:
    """Start ``tasks`` (key -> ``(function, args)``) in ``workers`` processes (default: one per core but one, at most
    one per task), in the order given, and yield ``result(key)``, which returns that task's result or raises its error.

    This process works too: while ``result`` waits for a task, it runs tasks no worker has started yet, the last
    ones first (a task that was not started when its result is asked for runs here at once). So the first results
    come while the workers still start up, and ``workers=0`` runs each task here when its result is asked for.
    Workers are started with ``spawn`` (no state of this process leaks into them: each imports what it needs), run
    one math thread each, and ignore Ctrl-C; leaving the block (normally, on an error or an interrupt) ends them. With
    a :class:`WorkerPool`, its workers run the tasks and stay alive afterwards (on an error or an interrupt, the
    tasks not yet started are cancelled); a lone task runs here, which saves sending it and its result between
    processes.
    """
    if pool is not None:
        executor = pool.executor() if len(tasks) > 1 else None  # a lone task runs here: no trip to a worker
        pending = {key: executor.submit(function, *args) if executor else None
                   for key, (function, args) in tasks.items()}  # fmt: skip
        try:
            yield _collector(tasks, pending)
        finally:
            for future in pending.values():
                if future is not None:
                    future.cancel()
        return
    workers = min(check_workers(workers), len(tasks))
    pool = _start_pool(workers) if workers else None
    pending: dict[Key, Future | None] = {key: pool.submit(function, *args) if pool else None
                                         for key, (function, args) in tasks.items()}  # fmt: skip
    try:
        yield _collector(tasks, pending)
    except BaseException:
        if pool is not None:  # an error or an interrupt: the workers' tasks are no longer wanted
            _terminate_workers(pool)
        raise
    finally:
        if pool is not None:  # the workers exit (a second or so with torch loaded) while this process goes on
            pool.shutdown(wait=False, cancel_futures=True)


def _collector(tasks: Mapping[Key, Task], pending: dict[Key, Future | None]) -> Callable[[Key], Any]:
    """``result(key)`` over tasks submitted to workers (``pending``; ``None``: run here): waiting for one, this process
    runs the tasks no worker has started yet, the last ones first."""
    done: dict[Key, Future] = {}

    def run_here(key: Key) -> None:
        function, args = tasks[key]
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except Exception as err:  # kept for whoever asks for this result, as a worker's would be
            future.set_exception(err)
        done[key] = future

    def result(key: Key) -> Any:
        while key not in done:
            future = pending[key]
            if future is None or future.cancel():  # not started by a worker: run it here
                del pending[key]
                run_here(key)
            elif future.done():
                done[key] = pending.pop(key)
            else:
                idle = next((other for other in reversed(pending) if other != key and
                             (pending[other] is None or pending[other].cancel())), None)  # fmt: skip
                if idle is None:
                    wait([future])
                else:
                    del pending[idle]
                    run_here(idle)
        return done[key].result()

    return result


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """End a pool's worker processes now, whatever they are running, and wait (briefly) until they have ended: a worker
    still starting up would otherwise find this process gone and print a traceback of its own."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    previous = threading.excepthook
    threading.excepthook = _quiet_cancelled(previous)
    try:
        if hasattr(pool, "terminate_workers"):  # Python 3.14+
            pool.terminate_workers()
        else:
            for process in processes:
                process.terminate()
        for process in processes:
            process.join(timeout=5)
        manager = getattr(pool, "_executor_manager_thread", None)
        if manager is not None:  # it marks the pool broken now that its workers are gone: let it finish quietly
            manager.join(timeout=5)
    finally:
        threading.excepthook = previous


def _quiet_cancelled(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """``hook`` but for the ``InvalidStateError`` that Python 3.11's process pool raises in its manager thread when it
    marks as broken a future this process had cancelled (to run that task itself): a known CPython bug, harmless
    here, which would otherwise print a traceback after "interrupted"."""

    def hook_but_cancelled(args: Any) -> None:
        if args.exc_type is not None and args.exc_type.__name__ == "InvalidStateError":
            return
        hook(args)

    return hook_but_cancelled
