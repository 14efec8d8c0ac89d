"""Supervised fine-tuning: maximise the teacher-forced likelihood of the demonstrations.

SFT estimates the model's preference on ground-truth prefixes ``s*_n`` as if the model had surely reached them,
which is the optimism :mod:`iftgym.metrics.estimators` measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.common import frozen_table, sft_loss_from_logps, step_logps
from iftgym.types import StepBatch
from iftgym.validate import one_of
from iftgym.world import World

EMBEDDINGS = ("live", "frozen")
AVERAGES = ("sequence", "token")


@dataclass
class SFTConfig:
    """``embedding``: where the inputs are read — ``"live"``, the policy's own encoding table (SFT), or ``"frozen"``,
    a copy re-synced after every step, as IFT's reference code reads every input, so a learned input embedding gets
    no gradient (the control that isolates what IFT's frozen embedding costs). ``average``: ``"sequence"``, each
    demonstration's mean step loss, then the mean over the batch (every demonstration weighs the same, as IFT's
    loss does), or ``"token"``, one mean over every target token of the batch (TRL's ``SFTTrainer``: a long answer
    weighs more); the two agree when all answers have the same length. Under ``torchrun``, ``"token"`` averages
    each process's share."""

    embedding: str = "live"
    average: str = "sequence"

    def __post_init__(self) -> None:
        one_of("embedding", self.embedding, EMBEDDINGS)
        one_of("average", self.average, AVERAGES)


class SFT(Rule):
    """Supervised fine-tuning: the mean teacher-forced loss ``-log pi(a*_t | s*_t)`` of the demonstrations."""

    name = "sft"
    data = "demos"
    config_class = SFTConfig

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        self.after_step(policy)

    def after_step(self, policy: Policy) -> None:
        if self.config.embedding == "frozen":
            self.frozen_table = frozen_table(policy)

    def loss(self, policy: Policy, batch: StepBatch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.config.embedding == "frozen":
            logps = batch.logps(policy(policy.seed_inputs(policy.embed(batch.ids, self.frozen_table))))
        else:
            logps = step_logps(policy, batch)
        if self.config.average == "token":
            mask = batch.mask.expand(logps.shape)
            loss = -(logps * mask).sum((-2, -1)) / mask.sum((-2, -1)).clamp(min=1)
        else:
            loss = sft_loss_from_logps(logps, batch.mask)
        return loss, {"loss": loss.detach()}
