"""PPO: the clipped surrogate objective with GAE and a critic, driven by the environment's reward.

The policy estimates its preference on its *own* rollouts ``s^theta_n``, scored by the reward. Each rollout is
reused for ``update_epochs`` optimiser steps; a KL penalty to a frozen reference (the policy at the start of
training) can be folded into the reward as in RLHF.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.onpolicy import CriticRule, per_seed_sum
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


class PPO(CriticRule):
    """PPO's clipped surrogate on the policy's own rollouts, advantages by GAE from a learned critic."""

    name = "ppo"
    config_class = PPOConfig

    def collect(self, policy: Policy, step: int) -> None:
        """Fresh rollouts every ``update_epochs`` steps (at step 0 of the stage, then each rollout is reused)."""
        c = self.config
        if step % c.update_epochs == 0:
            self.rollout = self.fresh_rollout(policy, c.gae_lambda, c.normalize_advantage)

    def loss(self, policy: Policy, batch: None, step: int) -> tuple[torch.Tensor, dict]:
        c = self.config
        r = self.current_rollout()
        log_probs = r.log_probs(policy)
        ratio = torch.exp(r.logps(log_probs) - r.old_logps)
        clipped = ratio.clamp(1 - c.clip_range, 1 + c.clip_range)
        # min(ratio * A, clipped * A) is min(ratio, clipped) * A for A >= 0 and max(ratio, clipped) * A for A < 0
        surrogate = torch.minimum(ratio, clipped) * r.adv_pos + torch.maximum(ratio, clipped) * r.adv_neg
        policy_loss = -per_seed_sum(surrogate)
        value_loss = r.value_loss(policy, self.critic)
        ent = r.entropy(log_probs)
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * ent
        metrics = {
            "loss": loss.detach(),
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": ent.detach(),
            "clip_fraction": per_seed_sum(r.weight * ((ratio - 1).abs() > c.clip_range)).detach(),
            "episode_return": r.batch.rewards.sum(-1).mean(-1),
        }
        return loss, metrics
