"""REINFORCE with a learned baseline: raise the log-probability of each action by its return-to-go minus the
critic's value. Fresh episodes every step, optional KL penalty to a frozen reference as in RLHF."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.onpolicy import CriticRule, per_seed_sum
from iftgym.validate import at_least, between, non_negative


@dataclass
class REINFORCEConfig:
    """``n_episodes`` per seed and step, discount ``gamma``, critic weight ``vf_coef``, KL penalty ``kl_coef``."""

    n_episodes: int = 16
    gamma: float = 0.99
    vf_coef: float = 0.5
    kl_coef: float = 0.0

    def __post_init__(self) -> None:
        at_least("n_episodes", self.n_episodes, 1)
        between("gamma", self.gamma, 0, 1)
        non_negative("vf_coef", self.vf_coef)
        non_negative("kl_coef", self.kl_coef)


class REINFORCE(CriticRule):
    """REINFORCE with a learned baseline on fresh episodes every step."""

    name = "reinforce"
    config_class = REINFORCEConfig

    def collect(self, policy: Policy, step: int) -> None:
        """Fresh episodes every step; GAE with lambda = 1 is exactly "return-to-go minus baseline"."""
        self.rollout = self.fresh_rollout(policy, gae_lambda=1.0)

    def loss(self, policy: Policy, batch: None, step: int) -> tuple[torch.Tensor, dict]:
        c = self.config
        r = self.current_rollout()
        policy_loss = -per_seed_sum(r.logps(r.log_probs(policy)) * (r.adv_pos + r.adv_neg))
        value_loss = r.value_loss(policy, self.critic)
        loss = policy_loss + c.vf_coef * value_loss
        metrics = {
            "loss": loss.detach(),
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "episode_return": r.batch.rewards.sum(-1).mean(-1),
        }
        return loss, metrics
