"""Pieces every update rule shares: per-step log-probabilities of a batch under a policy (of the taken actions, or
of every action), and masked means."""

from __future__ import annotations

import torch

from iftgym.policies.base import Policy
from iftgym.types import PairBatch, StepBatch


def step_logps(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T)`` teacher-forced log-probabilities ``log pi(a_t | s_t)`` of the batch; 0 on masked steps."""
    return batch.logps(policy.logits_at(batch.ids))


def pair_step_logps(policy: Policy, pairs: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, B, T)`` step log-probabilities of the chosen and of the rejected trajectories, from one forward pass
    over both sides (half the calls into the model of two passes)."""
    return step_logps(policy, pairs.joined()).split(pairs.size, dim=-2)


def sequence_logps(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B)``: log-probability of each whole trajectory (sum over its steps)."""
    return step_logps(policy, batch).sum(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis counting only masked-in entries (0 for a row with none)."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def sft_loss_from_logps(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(K,)``: per-sequence mean of the step losses ``-log pi``, then mean over the batch."""
    return masked_mean(-logps, mask).mean(-1)


def frozen_table(policy: Policy) -> torch.Tensor:
    """A copy of the policy's encoding table that no gradient reaches (a rule re-syncs it after every optimiser
    step, as IFT's reference code does with its frozen ``embed_tokens``); a fixed table (one-hot) is returned as is."""
    table = policy.embedding_table()
    return table.detach().clone() if table.requires_grad else table


def step_log_probs(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T, A)`` the policy's log-probabilities of every action at each step of the batch, in float32 (the
    rules that read more than the taken action's: a full-vocabulary KL, a top-k entropy)."""
    return torch.log_softmax(policy.logits_at(batch.ids).float(), -1)


def taken_logps(log_probs: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T)`` the log-probabilities of the batch's actions read from ``log_probs`` ``(K, B, T, A)``; 0 on
    masked steps (what :func:`step_logps` returns, from a forward pass already made)."""
    taken = log_probs.gather(-1, batch.actions.expand(log_probs.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return taken * batch.mask
