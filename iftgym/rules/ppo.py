"""PPO: the clipped surrogate objective with GAE and a critic, driven by the environment's reward.

The policy estimates its preference on its *own* rollouts ``s^theta_n``, scored by the reward. Each rollout is
reused for ``update_epochs`` optimiser steps; a KL penalty to a frozen reference (the policy at the start of
training) can be folded into the reward as in RLHF.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iftgym.mdp import MDP
from iftgym.policies.base import Policy
from iftgym.rules.base import Rule, frozen_copy
from iftgym.rules.common import masked_mean, step_logps
from iftgym.rules.onpolicy import ValueHead, collect, entropy


@dataclass
class PPOConfig:
    """Stable-Baselines3's names and defaults where they apply (``clip_range``, ``gae_lambda``, ``vf_coef``...)."""

    n_episodes: int = 16
    update_epochs: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    kl_coef: float = 0.0
    normalize_advantage: bool = True

    def __post_init__(self) -> None:
        for name in ("n_episodes", "update_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is out of range: expected at least 1")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} is out of range: expected 0 <= {name} <= 1")
        if not self.clip_range > 0:
            raise ValueError(f"clip_range={self.clip_range} is out of range: expected clip_range > 0")
        for name in ("vf_coef", "ent_coef", "kl_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} is out of range: expected {name} >= 0")


def normalized(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Advantages standardised per seed over the real steps of the batch."""
    dims = tuple(range(1, advantages.dim()))
    n = mask.sum(dims, keepdim=True).clamp(min=1)
    mean = (advantages * mask).sum(dims, keepdim=True) / n
    std = (((advantages - mean) * mask) ** 2).sum(dims, keepdim=True).div(n).sqrt()
    return (advantages - mean) / (std + 1e-8) * mask


class PPO(Rule):
    name = "ppo"
    data = "env"

    def __init__(self, config: PPOConfig | None = None) -> None:
        self.config = config or PPOConfig()

    def setup(self, policy: Policy, world: MDP, generator: torch.Generator) -> None:
        super().setup(policy, world, generator)
        self.critic = ValueHead(policy.n_seeds, policy.embedding_table().shape[-1]).to(policy.embedding_table().device)
        self.reference = frozen_copy(policy) if self.config.kl_coef > 0 else None

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.critic.parameters())

    def loss(self, policy: Policy, batch: None, step: int) -> tuple[torch.Tensor, dict]:
        c = self.config
        if step % c.update_epochs == 0:
            self.rollout = collect(
                policy, self.critic, self.reference, self.world, c.n_episodes, self.generator,
                c.gamma, c.gae_lambda, c.kl_coef,
            )  # fmt: skip
        r = self.rollout
        mask = r.batch.mask
        advantages = normalized(r.advantages, mask) if c.normalize_advantage else r.advantages
        logps = step_logps(policy, r.batch)
        ratio = torch.exp(logps - r.old_logps)
        surrogate = torch.min(ratio * advantages, ratio.clamp(1 - c.clip_range, 1 + c.clip_range) * advantages)
        policy_loss = -masked_mean(surrogate, mask).mean(-1)
        values = self.critic(policy.seed_inputs(policy.embed(r.batch.ids)).detach())
        value_loss = masked_mean((values - r.returns) ** 2, mask).mean(-1)
        ent = masked_mean(entropy(policy, r.batch), mask).mean(-1)
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * ent
        episode_return = r.batch.rewards.sum(-1).mean(-1)
        metrics = {
            "loss": loss.detach(),
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": ent.detach(),
            "clip_fraction": masked_mean(((ratio - 1).abs() > c.clip_range).float(), mask).mean(-1).detach(),
            "episode_return": episode_return,
        }
        return loss, metrics
