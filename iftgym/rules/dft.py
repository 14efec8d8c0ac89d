"""Dynamic Fine-Tuning (DFT): supervised fine-tuning whose every token loss is weighted by the model's own
probability of that token, held constant.

Wu et al., "On the Generalization of SFT: A Reinforcement Learning Perspective with Reward Rectification"
(arXiv 2508.05629) read SFT's gradient as a policy gradient whose implicit reward is ``1 / p_t`` on the
demonstration's token: rare tokens get huge updates. DFT cancels that weight by multiplying each token's loss by
``sg(p_t)`` (``sg``: stop-gradient):

    L_DFT = - sum_t sg(p_t) * log p_t,        p_t = pi(a*_t | s*_t)

so the gradient of a token is ``-grad p_t`` instead of SFT's ``-grad log p_t = -grad p_t / p_t``.

TRL 1.16 ships it as ``SFTConfig(loss_type="dft")`` (trl/trainer/sft_trainer.py, ``SFTTrainer.compute_loss``:
``per_token_loss = -log_probs * log_probs.exp().detach()``, then the batch's sum over its token count), which is
this rule with ``average="token"``. iftgym's default, ``average="sequence"``, averages each demonstration's token
losses first, as iftgym's SFT does (the two agree when every demonstration has the same length).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.common import masked_mean, step_logps
from iftgym.types import StepBatch
from iftgym.validate import one_of

AVERAGES = ("sequence", "token")


@dataclass
class DFTConfig:
    """``average``: ``"sequence"``, each demonstration's mean weighted token loss, then the mean over the batch
    (every demonstration weighs the same, as iftgym's SFT), or ``"token"``, one mean over every target token of the
    batch (TRL's ``SFTTrainer`` with ``loss_type="dft"``: a long answer weighs more). Under ``torchrun`` and with
    ``grad_accum``, ``"token"`` is still the whole batch's mean, as SFT's is."""

    average: str = "sequence"

    def __post_init__(self) -> None:
        one_of("average", self.average, AVERAGES)


def average_tokens(values: torch.Tensor, mask: torch.Tensor, average: str = "sequence") -> torch.Tensor:
    """``(K,)``: token values ``(K, B, T)`` averaged over the tokens ``mask`` keeps, per sequence then over the batch
    (``"sequence"``), or over every token of the batch at once (``"token"``)."""
    mask = mask.expand(values.shape).to(values.dtype)
    if average == "token":
        return (values * mask).sum((-2, -1)) / mask.sum((-2, -1)).clamp(min=1)
    return masked_mean(values, mask).mean(-1)


def dft_loss(logps: torch.Tensor, mask: torch.Tensor, average: str = "sequence") -> torch.Tensor:
    """``(K,)`` DFT losses from step log-probabilities ``(K, B, T)``: the token losses ``-sg(p_t) log p_t``,
    averaged as ``average`` says."""
    return average_tokens(-logps.exp().detach() * logps, mask, average)


class DFT(Rule):
    """Dynamic Fine-Tuning: SFT's token losses ``-log p_t`` weighted by ``sg(p_t)``."""

    name = "dft"
    data = "demos"
    config_class = DFTConfig

    def loss(self, policy: Policy, batch: StepBatch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # 1. teacher-forced log-probabilities of the demonstrations' actions, (K, B, T), 0 on padding
        logps = step_logps(policy, batch)
        # 2. each token's loss -log p_t weighted by its probability p_t, which gets no gradient; averaged
        loss = dft_loss(logps, batch.mask, self.config.average)
        # 3. for comparison with SFT: the plain negative log-likelihood, averaged the same way
        nll = average_tokens(-logps.detach(), batch.mask, self.config.average)
        return loss, {"loss": loss.detach(), "nll": nll}
