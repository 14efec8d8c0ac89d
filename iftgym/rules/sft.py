"""Supervised fine-tuning: maximise the teacher-forced likelihood of the demonstrations.

SFT estimates the model's preference on ground-truth prefixes ``s*_n`` as if the model had surely reached them,
which is the optimism :mod:`iftgym.metrics.estimators` measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.common import sft_loss_from_logps, step_logps
from iftgym.types import StepBatch


@dataclass
class SFTConfig:
    """SFT has no hyper-parameters of its own (learning rate and steps belong to the training loop)."""


class SFT(Rule):
    """Supervised fine-tuning: the mean teacher-forced loss ``-log pi(a*_t | s*_t)`` of the demonstrations."""

    name = "sft"
    data = "demos"
    config_class = SFTConfig

    def loss(self, policy: Policy, batch: StepBatch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logps = step_logps(policy, batch)
        loss = sft_loss_from_logps(logps, batch.mask)
        return loss, {"loss": loss.detach()}
