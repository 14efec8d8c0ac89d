"""Importance-weighted SFT (iw-SFT): supervised fine-tuning whose losses are weighted by how much more likely the
current policy makes the demonstration than the reference does, the weight held constant.

Qin & Springenberg, "Supervised Fine Tuning on Curated Data is Reinforcement Learning (and can be improved)"
(arXiv 2507.12856; code emmyqin/iw_sft, ``bounding_trainers.py``, ``IwSFTLoss``) read SFT on curated data as a
lower bound on an RL objective, and tighten it with importance weights between the policy and the reference
``pi_ref`` (the policy as the stage started, frozen). Two levels (``level``):

* ``"sequence"`` (the paper's, default): one weight per demonstration,
  ``w_i = clip(exp(temperature * mean_t(log p_t - log p_ref,t)), 0, 16)``, the mean over the demonstration's
  target tokens, and every token loss of the demonstration is ``-w_i log p_t``;
* ``"token"``: one weight per token, ``w_t = clip(p_t / p_ref,t, 0.2, 1.8)``, token loss ``-w_t log p_t``.

The weights get no gradient (the official code computes them under ``torch.no_grad``), so at the stage's first step
(policy = reference) every weight is 1 and iw-SFT is SFT. ``temperature`` is the official ``temp`` (1.0 as its
trainer calls it). The official code sums the weighted token losses over the batch's target-token count
(``average="token"``); iftgym's default ``"sequence"`` averages each demonstration first, as its SFT does.

The reference is frozen and the demonstrations fixed for the stage, so its log-probabilities of them are computed
once, in ``prepare``, and looked up for every minibatch (:class:`~iftgym.rules.common.ReferenceLogps`): a step costs
SFT's one forward pass, not two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule, frozen_copy
from iftgym.rules.common import ReferenceLogps, masked_mean, step_logps
from iftgym.rules.dft import average_tokens
from iftgym.types import StepBatch
from iftgym.validate import one_of, positive
from iftgym.world import World

LEVELS = ("sequence", "token")
AVERAGES = ("sequence", "token")
SEQUENCE_CLIP = (0.0, 16.0)  # the official clamp of a sequence weight
TOKEN_CLIP = (0.2, 1.8)  # ... and of a token weight, 1 -+ 0.8


@dataclass
class IWSFTConfig:
    """``level``: ``"sequence"`` (one clipped weight per demonstration, the paper's) or ``"token"`` (one per token);
    ``temperature``: scales the sequence level's mean log-ratio before the exponential (the official ``temp``);
    ``average``: as SFT's (``"token"`` is the official code's)."""

    level: str = "sequence"
    temperature: float = 1.0
    average: str = "sequence"

    def __post_init__(self) -> None:
        one_of("level", self.level, LEVELS)
        positive("temperature", self.temperature)
        one_of("average", self.average, AVERAGES)


def importance_weights(
    logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, level: str = "sequence", temperature: float = 1.0
) -> torch.Tensor:
    """``(K, B, T)`` iw-SFT's weights from the policy's and the reference's log-probabilities of the demonstrated
    actions ``(K, B, T)`` (a sequence's weight repeated over its steps), without gradient."""
    with torch.no_grad():
        log_ratio = logps - ref_logps
        mask = mask.expand(log_ratio.shape).to(log_ratio.dtype)
        if level == "sequence":
            weight = torch.exp(temperature * masked_mean(log_ratio, mask)).clamp(*SEQUENCE_CLIP)
            return weight.unsqueeze(-1).expand_as(log_ratio)
        return torch.exp(log_ratio).clamp(*TOKEN_CLIP)


class IWSFT(Rule):
    """Importance-weighted SFT: SFT's token losses weighted by a clipped, constant ratio to the stage's starting
    policy, per demonstration or per token."""

    name = "iw-sft"
    data = "demos"
    config_class = IWSFTConfig

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        self.reference = frozen_copy(policy)  # the policy as the stage started
        self.reference_logps = ReferenceLogps(self.reference)

    def prepare(self, policy: Policy, data: StepBatch) -> StepBatch:
        """The reference's log-probabilities of the stage's demonstrations, computed once for the whole stage."""
        self.reference_logps.prepare(data)
        return data

    def loss(self, policy: Policy, batch: StepBatch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        # 1. the demonstrated actions' log-probabilities, with gradient, and the reference's (computed in prepare)
        logps = step_logps(policy, batch)
        ref_logps = self.reference_logps(batch)
        # 2. the clipped importance weights, per demonstration or per token, held constant
        weights = importance_weights(logps, ref_logps, batch.mask, c.level, c.temperature)
        # 3. the weighted negative log-likelihood, averaged as SFT
        loss = average_tokens(-weights * logps, batch.mask, c.average)
        return loss, {
            "loss": loss.detach(),
            "weight": average_tokens(weights, batch.mask, c.average),
            "nll": average_tokens(-logps.detach(), batch.mask, c.average),
        }
