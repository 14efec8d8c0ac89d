"""Supervised fine-tuning: maximise the teacher-forced likelihood of the demonstrations.

SFT estimates the model's preference on ground-truth prefixes ``s*_n`` as if the model had surely reached them,
which is the optimism :mod:`iftgym.metrics.estimators` measures.

Prior-leaning transforms (``transform``): "Beyond Log Likelihood: Probability-Based Objectives for Supervised
Fine-Tuning across the Model Capability Continuum" (arXiv 2510.00526) replaces each token's ``-log p_t`` by another
decreasing function of ``p_t``: ``"p"`` (``-p_t``) and ``"p10"`` (``-p_t^10``) lean on the model's prior (a token
it finds unlikely gets little gradient: ``-grad p^k = -k p^k grad log p``), which the paper finds better when the
prior is already strong and worse when it is weak, where ``"log"`` (SFT, the default) wins. ``"power"`` is the
family between them, ``-(p_t^power - 1) / power`` (the Box-Cox / Tsallis q-log form): ``power`` 0 is ``-log p``
(its limit), 1 is ``1 - p`` (``"p"`` plus a constant), 10 is ``(1 - p^10) / 10`` (``"p10"``'s gradient over 10);
its gradient ``-p^power grad log p`` moves continuously from SFT's (0) through DFT's (1: ``sft(transform="p")``
has DFT's gradient, :mod:`iftgym.rules.dft`). The token values are averaged as ``average`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.common import frozen_table, sft_loss_from_logps, step_logps
from iftgym.rules.dft import average_tokens
from iftgym.types import StepBatch
from iftgym.validate import non_negative, one_of
from iftgym.world import World

EMBEDDINGS = ("live", "frozen")
AVERAGES = ("sequence", "token")
TRANSFORMS = ("log", "p", "p10", "power")


@dataclass
class SFTConfig:
    """``embedding``: where the inputs are read — ``"live"``, the policy's own encoding table (SFT), or ``"frozen"``,
    a copy re-synced after every step, as IFT's reference code reads every input, so a learned input embedding gets
    no gradient (the control that isolates what IFT's frozen embedding costs). ``average``: ``"sequence"``, each
    demonstration's mean step loss, then the mean over the batch (every demonstration weighs the same, as IFT's
    loss does), or ``"token"``, one mean over every target token of the batch (TRL's ``SFTTrainer``: a long answer
    weighs more); the two agree when all answers have the same length. Under ``torchrun`` and with ``grad_accum``
    the loop weighs each share by its tokens (:meth:`Rule.batch_weight`): the mean is the whole batch's.
    ``transform``: each token's loss as a function of its probability ``p``: ``"log"`` (``-log p``, SFT), ``"p"``
    (``-p``), ``"p10"`` (``-p^10``) or ``"power"`` (``-(p^power - 1) / power``, 0 for ``-log p``); see the module
    doc."""

    embedding: str = "live"
    average: str = "sequence"
    transform: str = "log"
    power: float = 1.0

    def __post_init__(self) -> None:
        one_of("embedding", self.embedding, EMBEDDINGS)
        one_of("average", self.average, AVERAGES)
        one_of("transform", self.transform, TRANSFORMS)
        non_negative("power", self.power)


def transformed_losses(logps: torch.Tensor, transform: str = "log", power: float = 1.0) -> torch.Tensor:
    """Token losses ``(K, B, T)`` from the demonstrated actions' log-probabilities: ``-log p``, ``-p``, ``-p^10``
    or ``-(p^power - 1) / power`` (``-log p`` at ``power`` 0)."""
    if transform == "log" or (transform == "power" and power == 0):
        return -logps
    if transform == "p":
        return -logps.exp()
    if transform == "p10":
        return -torch.exp(10 * logps)
    return -torch.expm1(power * logps) / power


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
        if self.config.transform != "log":  # a prior-leaning transform of each token's probability
            values = transformed_losses(logps, self.config.transform, self.config.power)
            loss = average_tokens(values, batch.mask, self.config.average)
            return loss, {"loss": loss.detach(), "nll": average_tokens(-logps.detach(), batch.mask,
                                                                       self.config.average)}  # fmt: skip
        if self.config.average == "token":
            mask = batch.mask.expand(logps.shape)
            loss = -(logps * mask).sum((-2, -1)) / mask.sum((-2, -1)).clamp(min=1)
        else:
            loss = sft_loss_from_logps(logps, batch.mask)
        return loss, {"loss": loss.detach()}
