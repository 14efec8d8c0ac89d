"""What PPO and REINFORCE share: a critic, KL-shaped rewards, generalised advantage estimation and the rule
base that sets them up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule, frozen_copy
from iftgym.rules.common import masked_mean, step_logps
from iftgym.types import StepBatch
from iftgym.world import World


class ValueHead(nn.Module):
    """A per-seed linear critic on the policy's input encodings (tabular values for one-hot encodings)."""

    def __init__(self, n_seeds: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_seeds, dim))
        self.bias = nn.Parameter(torch.zeros(n_seeds))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(K, B, T, D) -> (K, B, T)``."""
        return torch.einsum("kbtd,kd->kbt", inputs, self.weight) + self.bias[:, None, None]


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates ``(..., T)``; with ``lam = 1`` they are returns-to-go minus ``values``.

    Steps past the end of an episode (mask False) bootstrap nothing; the last real step's successor is terminal
    or a time limit, valued 0 either way (a truncated rollout is a rare, short-horizon bias accepted here).
    """
    maskf = mask.float()
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    next_value = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        alive_next = maskf[..., t + 1] if t + 1 < rewards.shape[-1] else torch.zeros_like(running)
        delta = rewards[..., t] + gamma * next_value * alive_next - values[..., t]
        running = (delta + gamma * lam * alive_next * running) * maskf[..., t]
        advantages[..., t] = running
        next_value = values[..., t]
    return advantages


@dataclass
class Rollout:
    """An on-policy batch with everything computed at sampling time (no gradient)."""

    batch: StepBatch
    old_logps: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def collect(
    policy: Policy,
    critic: ValueHead,
    reference: Policy | None,
    world: World,
    n_episodes: int,
    generators: Sequence[torch.Generator],
    gamma: float,
    gae_lambda: float,
    kl_coef: float,
) -> Rollout:
    """Sample episodes from the current policy and score them; the reward is penalised by
    ``kl_coef * (log pi - log pi_ref)`` per step when a reference policy is given (RLHF's KL penalty). Seed k's
    episodes come from ``generators[k]``."""
    with torch.no_grad():
        batch = world.sample(policy, n_episodes, generators)
        old_logps = step_logps(policy, batch)
        rewards = batch.rewards
        if reference is not None and kl_coef > 0:
            rewards = rewards - kl_coef * (old_logps - step_logps(reference, batch)) * batch.mask
        values = critic(policy.seed_inputs(policy.embed(batch.ids)))
        advantages = gae(rewards, values, batch.mask, gamma, gae_lambda)
    return Rollout(batch, old_logps, advantages, advantages + values)


def entropy(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T)`` entropy of the policy at each step of the batch."""
    logps = torch.log_softmax(policy.logits_at(batch.ids).float(), dim=-1)
    return -(logps.exp() * logps).sum(-1)


class CriticRule(Rule):
    """Base of the rules that train on their own rollouts: a critic trained beside the policy and, when the
    subclass's ``self.config.kl_coef > 0``, a frozen reference (the policy at the start of training) for the KL
    penalty."""

    data = "env"

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        table = policy.embedding_table()
        self.critic = ValueHead(policy.n_seeds, table.shape[-1]).to(table.device)
        self.reference = frozen_copy(policy) if self.config.kl_coef > 0 else None

    def parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters())

    def fresh_rollout(self, policy: Policy, gae_lambda: float) -> Rollout:
        """New episodes from the current policy, scored with the config's ``n_episodes``, ``gamma`` and ``kl_coef``."""
        c = self.config
        return collect(policy, self.critic, self.reference, self.world, c.n_episodes, self.generators, c.gamma,
                       gae_lambda, c.kl_coef)  # fmt: skip

    def value_loss(self, policy: Policy, rollout: Rollout) -> torch.Tensor:
        """``(K,)`` squared error of the critic against the rollout's returns; it trains the critic only (the
        policy's encodings are detached)."""
        values = self.critic(policy.seed_inputs(policy.embed(rollout.batch.ids)).detach())
        return masked_mean((values - rollout.returns) ** 2, rollout.batch.mask).mean(-1)
