"""The Stable-Baselines3 PPO baseline returns seeded, row-stochastic policy matrices."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
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
