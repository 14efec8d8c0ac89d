"""Pieces every update rule shares: per-step log-probabilities of a batch under a policy, and masked means."""

from __future__ import annotations

import torch

from iftgym.mdp import StepBatch
from iftgym.policies.base import Policy


def step_logps_from_logits(logits: torch.Tensor, batch: StepBatch, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(K, B, T)`` log-probabilities of the batch's actions under ``logits (K, B, T, A)``, computed in ``dtype``;
    0 on masked steps."""
    logps = torch.log_softmax(logits.to(dtype), dim=-1)
    actions = batch.actions.expand(logps.shape[:-1])
    taken = logps.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return taken * batch.mask


def step_logps(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T)`` teacher-forced log-probabilities ``log pi(a_t | s_t)`` of the batch; 0 on masked steps."""
    return step_logps_from_logits(policy.logits_at(batch.ids), batch)


def sequence_logps(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B)``: log-probability of each whole trajectory (sum over its steps)."""
    return step_logps(policy, batch).sum(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis counting only masked-in entries (0 for a row with none)."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def sft_loss_from_logps(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(K,)``: per-sequence mean of the step losses ``-log pi``, then mean over the batch."""
    return masked_mean(-logps, mask).mean(-1)
