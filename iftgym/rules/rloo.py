"""RLOO: REINFORCE with a leave-one-out baseline, as TRL 1.16's ``RLOOTrainer`` computes it
(trl/trainer/rloo_trainer.py).

Kool et al., "Buy 4 REINFORCE samples, get a baseline for free!" (2019); Ahmadian et al., "Back to Basics"
(arXiv 2402.14740). Every step (or every ``num_iterations`` steps) the rule samples ``n_episodes`` fresh episodes
per seed in groups of ``num_generations`` (k) that share one start, as GRPO does. Each completion is one action: its
log-probability is the sum over its tokens, ``logp_i = sum_t log pi(a_t | s_t)``. Its reward is its episode's total
``r_i``, minus the KL to the reference summed over its tokens with the first-order estimator, computed with the
sampling policy (``_generate_and_score_completions``):

    R_i = r_i - beta * sum_t (log pi_old - log pi_ref)(a_t | s_t)

and its advantage is that reward against the mean of the other k - 1 of its group (``normalize_advantages``: then
standardised over the batch, Bessel std + 1e-4):

    A_i = R_i - (sum_{j in group} R_j - R_i) / (k - 1)

The loss (``_compute_loss``) is PPO's clipped surrogate on the sequence's ratio ``rho_i = exp(logp_i - logp_old,i)``,
averaged over the completions:

    L = mean_i -min(rho_i A_i, clip(rho_i, 1 - epsilon, 1 + epsilon_high) A_i)

With ``num_iterations=1`` the ratio is 1 and the gradient is REINFORCE's, ``-mean_i A_i grad logp_i``.

Differences from TRL, where iftgym's worlds differ from a prompt dataset: a group's start is drawn as
:meth:`World.sample` draws one, and every process of a ``torchrun`` run samples whole groups of its own (so
``normalize_advantages`` standardises over the process's batch; TRL: over every process's). TRL's
``reward_clip_range`` and vLLM options are not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.onpolicy import GroupRule, check_groups, sampled_logps
from iftgym.types import StepBatch
from iftgym.validate import at_least, non_negative, positive


@dataclass
class RLOOConfig:
    """TRL's ``RLOOConfig`` names and defaults: ``num_generations`` (the group size k), ``beta`` (the weight of the
    summed KL in the reward, to the policy as the stage started; 0 builds no reference), ``epsilon`` and
    ``epsilon_high`` (``None``: ``epsilon``), ``num_iterations`` (optimiser steps per sampled batch) and
    ``normalize_advantages``. ``n_episodes`` is the episodes sampled per seed and batch, a multiple of
    ``num_generations``."""

    n_episodes: int = 16
    num_generations: int = 2
    beta: float = 0.05
    epsilon: float = 0.2
    epsilon_high: float | None = None
    num_iterations: int = 1
    normalize_advantages: bool = False

    def __post_init__(self) -> None:
        check_groups(self.n_episodes, self.num_generations, note="a leave-one-out baseline needs two completions")
        non_negative("beta", self.beta)
        positive("epsilon", self.epsilon)
        if self.epsilon_high is not None:
            positive("epsilon_high", self.epsilon_high)
        at_least("num_iterations", self.num_iterations, 1)


def leave_one_out_advantages(rewards: torch.Tensor, group_size: int, normalize: bool = False) -> torch.Tensor:
    """``(K, B)`` advantages of rewards ``(K, B)`` whose consecutive runs of ``group_size`` form the groups: each
    reward minus the mean of the others of its group; ``normalize``: then standardised over each seed's batch
    (Bessel std + 1e-4, as TRL)."""
    groups = rewards.unflatten(-1, (-1, group_size))
    baselines = (groups.sum(-1, keepdim=True) - groups) / (group_size - 1)
    advantages = (groups - baselines).flatten(-2)
    if normalize:
        advantages = (advantages - advantages.mean(-1, keepdim=True)) / (advantages.std(-1, keepdim=True) + 1e-4)
    return advantages


def rloo_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, epsilon_low: float, epsilon_high: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(K,)`` RLOO losses and metrics from the completions' summed log-probabilities ``(K, B)`` under the current
    policy (with gradient) and the sampling one, and their advantages ``(K, B)``: TRL's
    ``RLOOTrainer._compute_loss``."""
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    loss = (-torch.min(ratio * advantages, clipped * advantages)).mean(-1)
    low, high = (ratio < 1 - epsilon_low) & (advantages < 0), (ratio > 1 + epsilon_high) & (advantages > 0)
    return loss, {"clip_ratio": (low | high).to(logps.dtype).mean(-1).detach()}


@dataclass
class LeaveOneOutSamples:
    """One sampled batch, as the loss reads it: the episodes, each one's total reward, KL-penalised reward and
    advantage ``(K, B)``, the sampling policy's summed log-probabilities ``(K, B)`` and the summed first-order KL
    to the reference ``(K, B)`` (``None`` with ``beta=0``)."""

    batch: StepBatch
    rewards: torch.Tensor
    penalised: torch.Tensor
    advantages: torch.Tensor
    old_logps: torch.Tensor
    kl: torch.Tensor | None


class RLOO(GroupRule):
    """REINFORCE leave-one-out on fresh groups of the policy's own episodes (TRL's ``RLOOTrainer``)."""

    name = "rloo"
    config_class = RLOOConfig

    def score(self, policy: Policy, batch: StepBatch) -> LeaveOneOutSamples:
        """The groups :meth:`GroupRule.collect` sampled (every ``num_iterations`` steps), with their summed
        log-probabilities, KL-penalised rewards and leave-one-out advantages."""
        c = self.config
        # 1. (collect) n_episodes / k starts per seed, each answered k times by the current policy
        # 2. each completion's log-probability under the sampling policy: the sum over its tokens
        old_token_logps = sampled_logps(policy, batch)[0]
        old_logps = old_token_logps.sum(-1)
        # 3. its reward: the episode's total, minus beta times the summed KL estimate log pi_old - log pi_ref
        rewards = batch.rewards.sum(-1)
        kl = None
        penalised = rewards
        if self.reference is not None:
            kl = ((old_token_logps - sampled_logps(self.reference, batch)[0]) * batch.mask).sum(-1)
            penalised = rewards - c.beta * kl
        # 4. its advantage: the reward against the mean of the group's other completions
        advantages = leave_one_out_advantages(penalised, c.num_generations, c.normalize_advantages)
        return LeaveOneOutSamples(batch, rewards, penalised, advantages, old_logps, kl)

    def loss(self, policy: Policy, batch: None, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        s: LeaveOneOutSamples = self.current_samples()
        # 5. the completions' log-probabilities under the current policy, with gradient; the clipped surrogate
        logps = sampled_logps(policy, s.batch)[0].sum(-1)
        epsilon_high = c.epsilon if c.epsilon_high is None else c.epsilon_high
        loss, metrics = rloo_loss(logps, s.old_logps, s.advantages, c.epsilon, epsilon_high)
        tokens = s.batch.mask.sum((-2, -1)).clamp(min=1)
        if s.kl is not None:
            metrics["kl"] = s.kl.sum(-1) / tokens  # TRL's logged kl: a mean over the batch's tokens
        return loss, {
            "loss": loss.detach(),
            **metrics,
            "reward": s.rewards.mean(-1),
            "reward_std": s.rewards.std(-1),
            "completion_length": s.batch.mask.sum(-1).float().mean(-1),
            "episode_return": s.rewards.mean(-1),
        }
