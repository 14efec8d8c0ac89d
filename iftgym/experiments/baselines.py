"""External baseline: Stable-Baselines3's PPO on the Gymnasium env ``iftgym/FrozenLake-v0``.

Each seed is one independent SB3 run on CPU, seeded so that the same seed gives the same policy. The trained
actor is read back as an ``S x A`` probability matrix (its action distribution at the one-hot observation of
every cell), the same format as :meth:`iftgym.policies.base.Policy.action_probs`, so it can be scored with the
exact solvers of :class:`~iftgym.worlds.frozen_lake.FrozenLakeMDP`. In a comparison it goes by the name ``sb3-ppo``.

Defaults differ from SB3's to keep a run cheap: 16 copies of the env stepped together, 8 steps each per
rollout (128 transitions a rollout; SB3's default is 2048 per env), 4 epochs of one minibatch of 128, learning
rate 3e-3, one hidden layer of 64 units for actor and critic, 4096 timesteps. Measured on a shared 2-core machine:
20 seeds take about 17 s in all (0.85 s a seed). At this budget PPO finds the paper map's goal in roughly a third
of the seeds (mean success probability about 0.3); raise ``total_timesteps`` for a converged baseline.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import gymnasium
import numpy as np
import torch

from iftgym.policies.base import check_seeds
from iftgym.validate import at_least
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

SB3 = "sb3-ppo"


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
