"""PPO: the clipped surrogate objective with GAE and a critic, driven by the environment's reward.

The policy estimates its preference on its *own* rollouts ``s^theta_n``, scored by the reward. Each rollout is
reused for ``update_epochs`` optimiser steps; a KL penalty to a frozen reference (the policy at the start of
training) can be folded into the reward as in RLHF.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.common import masked_mean, step_logps
from iftgym.rules.onpolicy import CriticRule, entropy
from iftgym.validate import at_least, between, non_negative, positive


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
        at_least("n_episodes", self.n_episodes, 1)
        at_least("update_epochs", self.update_epochs, 1)
        between("gamma", self.gamma, 0, 1)
        between("gae_lambda", self.gae_lambda, 0, 1)
        positive("clip_range", self.clip_range)
        non_negative("vf_coef", self.vf_coef)
        non_negative("ent_coef", self.ent_coef)
        non_negative("kl_coef", self.kl_coef)


def normalized(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Advantages standardised per seed over the real steps of the batch."""
    dims = tuple(range(1, advantages.dim()))
    n = mask.sum(dims, keepdim=True).clamp(min=1)
    mean = (advantages * mask).sum(dims, keepdim=True) / n
    std = (((advantages - mean) * mask) ** 2).sum(dims, keepdim=True).div(n).sqrt()
    return (advantages - mean) / (std + 1e-8) * mask


class PPO(CriticRule):
    """PPO's clipped surrogate on the policy's own rollouts, advantages by GAE from a learned critic."""

    name = "ppo"
    config_class = PPOConfig

    def loss(self, policy: Policy, batch: None, step: int) -> tuple[torch.Tensor, dict]:
        c = self.config
        if step % c.update_epochs == 0:
            self.rollout = self.fresh_rollout(policy, c.gae_lambda)
        r = self.rollout
        mask = r.batch.mask
        advantages = normalized(r.advantages, mask) if c.normalize_advantage else r.advantages
        logps = step_logps(policy, r.batch)
        ratio = torch.exp(logps - r.old_logps)
        surrogate = torch.min(ratio * advantages, ratio.clamp(1 - c.clip_range, 1 + c.clip_range) * advantages)
        policy_loss = -masked_mean(surrogate, mask).mean(-1)
        value_loss = self.value_loss(policy, r)
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
