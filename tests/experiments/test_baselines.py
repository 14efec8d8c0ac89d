"""The Stable-Baselines3 PPO baseline returns seeded, row-stochastic policy matrices."""

from __future__ import annotations

import io
import os
import signal
import stat
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP
from iftgym.experiments.baselines import SB3Job, sb3_tasks
from iftgym.parallel import in_background


def test_sb3_ppo_returns_row_stochastic_policies(paper: FrozenLakeMDP) -> None:
    from iftgym.experiments.baselines import train_sb3_ppo

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    small = {"total_timesteps": 128, "n_envs": 4, "n_steps": 16, "batch_size": 32, "n_epochs": 1}
    policies = train_sb3_ppo(paper, seeds=[0, 1], **small)
    assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG is untouched
    assert torch.get_num_threads() == threads
    assert policies.shape == (2, paper.n_states, 4) and policies.dtype == np.float64
    assert (policies >= 0).all()
    np.testing.assert_allclose(policies.sum(-1), 1.0, atol=1e-6)
    assert not np.allclose(policies[0], policies[1])
    np.testing.assert_array_equal(train_sb3_ppo(paper, seeds=[1], **small)[0], policies[1])  # seeded
    slippery = FrozenLakeMDP.from_map(["SFF", "FHF", "FFG"], slippery=True, success_rate=0.5)
    assert train_sb3_ppo(slippery, seeds=1, **small).shape == (1, 9, 4)


SMALL_JOBS = [SB3Job(rows=("SF", "FG"), slippery=False, success_rate=1.0, seed=seed, total_timesteps=128)
              for seed in (0, 1)]  # fmt: skip


def sb3_results(jobs: list[SB3Job], cache: Path | None, workers: int) -> list[tuple[np.ndarray, float]]:
    """Each job's (policy, seconds), read from ``cache`` or trained in ``workers`` processes, as a comparison does."""
    done, tasks = sb3_tasks(jobs, cache)
    with in_background(tasks, workers) as result:
        return [done[job] if job in done else result(job) for job in jobs]


def test_sb3_job_key_names_every_setting() -> None:
    job = SMALL_JOBS[0]
    changed = [
        replace(job, rows=("SF", "HG")),
        replace(job, slippery=True),
        replace(job, success_rate=0.5),
        replace(job, seed=1),
        replace(job, total_timesteps=256),
    ]
    keys = {job.key(), *(other.key() for other in changed)}
    assert len(keys) == 6 and job.key() == replace(job).key()


def test_sb3_results_are_the_same_trained_here_in_a_worker_or_read_back(tmp_path, monkeypatch) -> None:
    here = sb3_results(SMALL_JOBS, None, workers=0)
    in_worker = sb3_results(SMALL_JOBS, tmp_path, workers=1)
    for (policy, seconds), (other, _) in zip(here, in_worker, strict=True):
        np.testing.assert_array_equal(policy, other)
        assert seconds > 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(f"{job.key()}.npz" for job in SMALL_JOBS)

    def no_training(self: SB3Job) -> None:
        raise AssertionError("a cached job was trained again")

    monkeypatch.setattr(SB3Job, "run", no_training)
    done, tasks = sb3_tasks(SMALL_JOBS, tmp_path)
    assert not tasks
    for job, (policy, seconds) in zip(SMALL_JOBS, in_worker, strict=True):
        np.testing.assert_array_equal(done[job][0], policy)
        assert done[job][1] == seconds  # the time it took to train, not to read


def test_a_damaged_or_foreign_cache_entry_is_trained_again(tmp_path) -> None:
    job = SMALL_JOBS[0]
    ((trained, _),) = sb3_results([job], None, workers=0)
    entry = tmp_path / f"{job.key()}.npz"
    for damage in (b"not a zip", None):
        if damage is None:  # a well-formed file that is not a policy of this map
            np.savez(entry, policy=np.full((3, 4), 0.25), seconds=np.float64(1.0))
        else:
            entry.write_bytes(damage)
        np.testing.assert_array_equal(sb3_results([job], tmp_path, workers=0)[0][0], trained)
        with np.load(entry, allow_pickle=False) as saved:  # overwritten with the good result
            np.testing.assert_array_equal(saved["policy"], trained)


def _npy(shape: tuple[int, ...], data: bytes, descr: str = "<f8") -> bytes:
    """An ``.npy`` member whose header claims ``shape`` and ``descr``, followed by ``data`` (whatever its size)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _saved(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


GOOD = np.array([[0.1, 0.2, 0.3, 0.4]] * 4)
SECONDS = np.float64(1.5)
BAD_ENTRIES = {
    "not a zip": b"not a zip",
    "truncated": _saved(policy=GOOD, seconds=SECONDS)[:200],
    "empty": b"",
    "strings": _saved(policy=np.full((4, 4), "0.25"), seconds=SECONDS),
    "string seconds": _saved(policy=GOOD, seconds=np.array("1.5")),
    "integers": _saved(policy=np.eye(4, dtype=np.int64), seconds=SECONDS),
    "negative probabilities": _saved(policy=np.array([[1.5, -0.5, 0, 0]] * 4), seconds=SECONDS),
    "rows not summing to 1": _saved(policy=np.full((4, 4), 0.3), seconds=SECONDS),
    "nan": _saved(policy=np.full((4, 4), np.nan), seconds=SECONDS),
    "infinite seconds": _saved(policy=GOOD, seconds=np.float64(np.inf)),
    "negative seconds": _saved(policy=GOOD, seconds=np.float64(-1)),
    "wrong shape": _saved(policy=np.full((3, 4), 0.25), seconds=SECONDS),
    "seconds not a scalar": _saved(policy=GOOD, seconds=np.ones(2)),
    "no seconds": _saved(policy=GOOD),
    "objects": _zip({"policy.npy": _npy((4, 4), b"\0" * 128, "|O"), "seconds.npy": _npy((), b"\0" * 8)}),
    "huge header": _zip({"policy.npy": _npy((10**12, 4), b""), "seconds.npy": _npy((), b"\0" * 8)}),
    "header right, data short": _zip({"policy.npy": _npy((4, 4), b"\0" * 16), "seconds.npy": _npy((), b"\0" * 8)}),
    "too large a file": _zip({"policy.npy": _saved(policy=GOOD), "padding": b"\0" * 200_000}),
}


@pytest.mark.parametrize("damage", [*BAD_ENTRIES, "fifo", "no cache folder yet"])
def test_a_bad_cache_entry_is_trained_again_and_replaced(damage, tmp_path, monkeypatch) -> None:
    """Whatever is found at an entry's path (damaged, crafted, a FIFO), the seed is trained again, never trusted,
    never fatal, and the entry is overwritten with the new result."""
    job, trained = SMALL_JOBS[0], np.array([[0.7, 0.1, 0.1, 0.1]] * 4)
    runs = []

    def fake_run(self: SB3Job) -> tuple[np.ndarray, float]:
        runs.append(self)
        return trained, 0.25

    monkeypatch.setattr(SB3Job, "run", fake_run)
    cache = tmp_path / "cache"
    cache.mkdir()
    entry = cache / f"{job.key()}.npz"
    if damage == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(entry)
    elif damage in BAD_ENTRIES:
        entry.write_bytes(BAD_ENTRIES[damage])
    else:
        cache = tmp_path / "not yet"
        entry = cache / f"{job.key()}.npz"
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading the cache hung"))
    signal.alarm(20)
    try:
        ((policy, seconds),) = sb3_results([job], cache, workers=0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert runs == [job]
    np.testing.assert_array_equal(policy, trained)
    assert seconds == 0.25
    assert stat.S_ISREG(entry.stat().st_mode)
    with np.load(entry, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["policy"], trained)
    # and the new entry is read back as it is
    done, tasks = sb3_tasks([job], cache)
    assert not tasks
    np.testing.assert_array_equal(done[job][0], trained)
    assert done[job][1] == 0.25


def test_a_good_cache_entry_of_float32_or_compressed_is_read_back(tmp_path) -> None:
    from iftgym.experiments.baselines import read_cache_entry

    for save in (np.savez, np.savez_compressed):
        path = tmp_path / "entry.npz"
        save(path, policy=GOOD.astype(np.float32), seconds=np.float32(2.0))
        policy, seconds = read_cache_entry(path, 4)
        np.testing.assert_allclose(policy, GOOD, atol=1e-7)
        assert policy.dtype == np.float64 and seconds == 2.0
    assert read_cache_entry(tmp_path / "missing.npz", 4) is None
    assert read_cache_entry(tmp_path, 4) is None  # a folder
