"""REINFORCE with a learned baseline: raise the log-probability of each action by its return-to-go minus the
critic's value. Fresh episodes every step, optional KL penalty to a frozen reference as in RLHF."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iftgym.mdp import MDP
from iftgym.policies.base import Policy
from iftgym.rules.base import Rule, frozen_copy
from iftgym.rules.common import masked_mean, step_logps
from iftgym.rules.onpolicy import ValueHead, collect


@dataclass
class REINFORCEConfig:
    n_episodes: int = 16
    gamma: float = 0.99
    vf_coef: float = 0.5
    kl_coef: float = 0.0

    def __post_init__(self) -> None:
        if self.n_episodes < 1:
            raise ValueError(f"n_episodes={self.n_episodes} is out of range: expected at least 1")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma} is out of range: expected 0 <= gamma <= 1")
        for name in ("vf_coef", "kl_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} is out of range: expected {name} >= 0")


class REINFORCE(Rule):
    name = "reinforce"
    data = "env"

    def __init__(self, config: REINFORCEConfig | None = None) -> None:
        self.config = config or REINFORCEConfig()

    def setup(self, policy: Policy, world: MDP, generator: torch.Generator) -> None:
        super().setup(policy, world, generator)
        self.critic = ValueHead(policy.n_seeds, policy.embedding_table().shape[-1]).to(policy.embedding_table().device)
        self.reference = frozen_copy(policy) if self.config.kl_coef > 0 else None

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.critic.parameters())

    def loss(self, policy: Policy, batch: None, step: int) -> tuple[torch.Tensor, dict]:
        c = self.config
        # gae with lambda = 1 is exactly "return-to-go minus baseline".
        r = collect(policy, self.critic, self.reference, self.world, c.n_episodes, self.generator, c.gamma, 1.0,
                    c.kl_coef)  # fmt: skip
        mask = r.batch.mask
        policy_loss = -masked_mean(step_logps(policy, r.batch) * r.advantages, mask).mean(-1)
        values = self.critic(policy.seed_inputs(policy.embed(r.batch.ids)).detach())
        value_loss = masked_mean((values - r.returns) ** 2, mask).mean(-1)
        loss = policy_loss + c.vf_coef * value_loss
        metrics = {
            "loss": loss.detach(),
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "episode_return": r.batch.rewards.sum(-1).mean(-1),
        }
        return loss, metrics
