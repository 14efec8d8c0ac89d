"""External baseline: Stable-Baselines3's PPO on the Gymnasium env ``iftgym/FrozenLake-v0``.

Each seed is one independent SB3 run on CPU, seeded so that the same seed gives the same policy. The trained
actor is read back as an ``S x A`` probability matrix (its action distribution at the one-hot observation of
every cell), the same format as :meth:`iftgym.policies.base.Policy.action_probs`, so it can be scored with the
exact solvers of :class:`~iftgym.worlds.frozen_lake.FrozenLakeMDP`. In a comparison it goes by the name ``sb3-ppo``.

Defaults differ from SB3's to keep a run cheap: 16 copies of the env stepped together, 8 steps each per
rollout (128 transitions a rollout; SB3's default is 2048 per env), 4 epochs of one minibatch of 128, learning
rate 3e-3, one hidden layer of 64 units for actor and critic, 4096 timesteps (a comparison uses 5000). A seed takes
about 0.6 s on one core; raise ``total_timesteps`` for a converged baseline.

A comparison trains its SB3 seeds in worker processes beside its other rules (:func:`sb3_tasks`), and keeps each
seed's policy in a cache folder, keyed by everything the run depends on (:class:`SB3Job`), so a re-run reads it
back instead of training again. Seeds are independent runs, so where a seed trained (in this
process or a worker, alone or beside others, now or read from the cache) does not change its policy.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from iftgym.io import atomic_path, remove_leftovers
from iftgym.parallel import Task
from iftgym.policies.base import check_seeds
from iftgym.validate import at_least
from iftgym.version import __version__
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP


@contextmanager
def _sb3_sandbox() -> Iterator[None]:
    """One torch thread (a tiny network gains nothing from more) and the caller's global RNG states restored
    afterwards (SB3 reseeds ``random``, NumPy and torch from each run's seed)."""
    threads, py_state, np_state = torch.get_num_threads(), random.getstate(), np.random.get_state()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)
        random.setstate(py_state)
        np.random.set_state(np_state)


def train_sb3_ppo(
    model: FrozenLakeMDP,
    total_timesteps: int = 4096,
    seeds: int | Sequence[int] = 1,
    n_envs: int = 16,
    n_steps: int = 8,
    batch_size: int = 128,
    n_epochs: int = 4,
    learning_rate: float = 3e-3,
    gamma: float = 0.99,
    hidden: int = 64,
    **ppo_kwargs: Any,
) -> np.ndarray:
    """Train one SB3 PPO agent per seed on ``model``'s map and return their policies, shape ``(K, S, A)``.

    Args:
        model: the map, slipperiness and success rate to train on.
        total_timesteps: environment steps per run (over all ``n_envs`` copies).
        seeds: K seeds, or their count (seeds ``0..K-1``).
        n_envs: copies of the env stepped together (a ``DummyVecEnv``, one policy forward for all of them).
        n_steps: steps per env copy in each rollout, so a rollout holds ``n_envs * n_steps`` transitions.
        batch_size: minibatch size of each PPO update.
        n_epochs: passes over each rollout.
        learning_rate: Adam's step size.
        gamma: discount.
        hidden: width of the one hidden layer of the actor and of the critic (``net_arch=[hidden]``).
        ppo_kwargs: any other argument of ``stable_baselines3.PPO`` (``ent_coef``, ``clip_range``...).

    Runs on CPU with one torch thread; the caller's global RNG states and thread count are left as they were.
    """
    from stable_baselines3 import PPO  # imported here: SB3 is slow to import and only this function needs it
    from stable_baselines3.common.vec_env import DummyVecEnv

    for name, value in (("total_timesteps", total_timesteps), ("n_envs", n_envs), ("hidden", hidden)):
        at_least(name, value, 1)

    def make_env() -> gymnasium.Env:
        return gymnasium.make(
            "iftgym/FrozenLake-v0",
            map=list(model.desc),
            slippery=model.slippery,
            success_rate=model.success_rate,
            one_hot=True,
        )

    observations = torch.eye(model.n_states)
    policies = []
    with _sb3_sandbox():
        for seed in check_seeds(seeds):
            env = DummyVecEnv([make_env] * n_envs)
            agent = PPO(
                "MlpPolicy",
                env,
                n_steps=n_steps,
                batch_size=batch_size,
                n_epochs=n_epochs,
                learning_rate=learning_rate,
                gamma=gamma,
                policy_kwargs={"net_arch": [hidden]},
                seed=seed,
                device="cpu",
                **ppo_kwargs,
            )
            agent.learn(total_timesteps=total_timesteps)
            with torch.no_grad():
                probs = agent.policy.get_distribution(observations).distribution.probs
            policies.append(probs.double().numpy())
            env.close()
    return np.stack(policies)


@dataclass(frozen=True)
class SB3Job:
    """One SB3 seed of a comparison: the map and dynamics, the seed and the step budget (other settings are
    :func:`train_sb3_ppo`'s defaults)."""

    rows: tuple[str, ...]
    slippery: bool
    success_rate: float
    seed: int
    total_timesteps: int

    def key(self) -> str:
        """A name for this job's cached result: a hash of the job and of every library version its policy
        depends on, so a result trained by another version is never read back."""
        libraries = ("stable_baselines3", "torch", "gymnasium", "numpy")
        spec = {**asdict(self), "iftgym": __version__, **{name: version(name) for name in libraries}}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]

    def run(self) -> tuple[np.ndarray, float]:
        """Train this seed: its policy ``(S, A)`` and the seconds it took."""
        start = time.perf_counter()
        model = FrozenLakeMDP.from_map(list(self.rows), self.slippery, self.success_rate)
        (policy,) = train_sb3_ppo(model, total_timesteps=self.total_timesteps, seeds=[self.seed])
        return policy, time.perf_counter() - start


# what a cache entry may weigh beyond its two arrays (zip entries, npy headers); a larger file is not read
CACHE_OVERHEAD = 1 << 16


def _cached(job: SB3Job, cache: Path | None) -> tuple[np.ndarray, float] | None:
    """The job's cached result, or ``None`` when there is none or it does not look like this job's (damaged,
    crafted or written by something else: it is trained again and overwritten). See :func:`read_cache_entry`."""
    if cache is None:
        return None
    return read_cache_entry(cache / f"{job.key()}.npz", len(job.rows) * len(job.rows[0]))


def read_cache_entry(path: Path, cells: int, actions: int = 4) -> tuple[np.ndarray, float] | None:
    """A cached policy ``(cells, actions)`` and the seconds it took to train, or ``None`` for anything else.

    Nothing in the file is trusted: it must be a regular file (a FIFO or a device is never opened) no larger than
    the two arrays need, each array's header is read before its data (a header claiming a huge shape allocates
    nothing), and the arrays must be float, of exactly the expected shapes, finite, the policy's rows probability
    distributions (non-negative, summing to 1 within 1e-6) and the seconds non-negative. Read without pickle; any
    failure, of any kind, is a miss."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 8 * (cells * actions + 1) + CACHE_OVERHEAD:
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # replaced since the first look
                return None
            with zipfile.ZipFile(file) as archive:
                policy = _read_array(archive, "policy.npy", (cells, actions))
                seconds = _read_array(archive, "seconds.npy", ())
    except Exception:  # a damaged entry, whatever the damage (zip, zlib, npy, OS errors...), is trained again
        return None
    rows_ok = (policy >= 0).all() and np.allclose(policy.sum(axis=1), 1, rtol=0, atol=1e-6)
    ok = np.isfinite(policy).all() and rows_ok and np.isfinite(seconds) and seconds >= 0
    return (policy.astype(float), float(seconds)) if ok else None


def _read_array(archive: zipfile.ZipFile, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float array ``name`` of ``archive``, of exactly ``shape``: its header is checked before any of its data
    is read (so nothing is allocated for a wrong one), then the data is read without pickle."""
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"unsupported npy version {version}")
        found, _, dtype = header
        if found != shape or dtype.kind != "f" or dtype.itemsize > 8:
            raise ValueError(f"array of shape {found} and dtype {dtype}, expected float {shape}")
    with archive.open(name) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _run_and_cache(job: SB3Job, cache: Path | None) -> tuple[np.ndarray, float]:
    """Train ``job`` and, with a cache folder, save its result there atomically (a killed run keeps every seed it
    finished). A cache entry that cannot be written (a folder in its place, a full disk) is skipped: the cache only
    saves time, it never fails a run."""
    policy, seconds = job.run()
    if cache is not None:
        try:
            with atomic_path(cache / f"{job.key()}.npz") as tmp, open(tmp, "wb") as file:
                np.savez(file, policy=policy, seconds=np.float64(seconds))
        except OSError:
            pass  # trained again next time
    return policy, seconds


def sb3_tasks(
    jobs: Sequence[SB3Job], cache: str | os.PathLike | None = None
) -> tuple[dict[SB3Job, tuple[np.ndarray, float]], dict[SB3Job, Task]]:
    """The jobs' results found in ``cache`` (a folder; ``None``: no cache), and, for
    :func:`~iftgym.parallel.in_background`, a task for each other job that trains it and saves it there."""
    folder = None if cache is None else Path(cache)
    if folder is not None:
        remove_leftovers(folder)
    done = {job: found for job in jobs if (found := _cached(job, folder)) is not None}
    return done, {job: (_run_and_cache, (job, folder)) for job in dict.fromkeys(jobs) if job not in done}
