"""The Stable-Baselines3 PPO baseline returns seeded, row-stochastic policy matrices."""

from __future__ import annotations

import numpy as np
import torch

from iftgym import FrozenLakeMDP


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
