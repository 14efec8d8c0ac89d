"""What PPO and REINFORCE share: a critic, KL-shaped rewards and generalised advantage estimation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from iftgym.mdp import StepBatch
from iftgym.policies.base import Policy
from iftgym.rules.common import step_logps


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
    world,
    n_episodes: int,
    generator: torch.Generator,
    gamma: float,
    gae_lambda: float,
    kl_coef: float,
) -> Rollout:
    """Sample episodes from the current policy and score them; the reward is penalised by
    ``kl_coef * (log pi - log pi_ref)`` per step when a reference policy is given (RLHF's KL penalty)."""
    with torch.no_grad():
        batch = world.sample(policy, n_episodes, generator)
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
