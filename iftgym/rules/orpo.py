"""ORPO: odds-ratio preference optimisation, an SFT term plus a contrast of the odds of chosen and rejected.

No reference policy. The odds use the *mean* per-step log-probability ``m`` of each trajectory:
``log_odds = (m_w - m_l) - (log(1 - e^{m_w}) - log(1 - e^{m_l}))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.common import masked_mean, pair_step_logps
from iftgym.types import PairBatch
from iftgym.validate import positive

# Mean log-probabilities are clamped just below 0 so that log(1 - e^m) stays finite for a certain trajectory.
MAX_MEAN_LOGP = -1e-6


@dataclass
class ORPOConfig:
    """``beta`` weighs the odds-ratio term against the SFT term (the reference code uses 0.25), beta > 0."""

    beta: float = 0.25

    def __post_init__(self) -> None:
        positive("beta", self.beta)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate for x near 0 and for very negative x."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(
    chosen_mean_logps: torch.Tensor, rejected_mean_logps: torch.Tensor, beta: float = 0.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair ORPO losses and log-odds ratios from the mean step log-probabilities of both sides."""
    m_w = chosen_mean_logps.clamp(max=MAX_MEAN_LOGP)
    m_l = rejected_mean_logps.clamp(max=MAX_MEAN_LOGP)
    log_odds = (m_w - m_l) - (log1mexp(m_w) - log1mexp(m_l))
    return -chosen_mean_logps - beta * F.logsigmoid(log_odds), log_odds


class ORPO(Rule):
    """ORPO: the chosen trajectory's mean negative log-likelihood minus ``beta`` times the log-sigmoid of the
    log-odds ratio of chosen over rejected; no reference policy."""

    name = "orpo"
    data = "pairs"
    config_class = ORPOConfig

    def loss(self, policy: Policy, batch: PairBatch, step: int) -> tuple[torch.Tensor, dict]:
        chosen, rejected = pair_step_logps(policy, batch)
        m_w, m_l = masked_mean(chosen, batch.chosen.mask), masked_mean(rejected, batch.rejected.mask)
        losses, log_odds = orpo_loss(m_w, m_l, self.config.beta)
        chosen_rewards, rejected_rewards = self.config.beta * m_w.detach(), self.config.beta * m_l.detach()
        metrics = {
            "loss": losses.mean(-1).detach(),
            "nll_loss": -m_w.detach().mean(-1),
            "log_odds_ratio": log_odds.detach().mean(-1),
            "rewards/chosen": chosen_rewards.mean(-1),
            "rewards/rejected": rejected_rewards.mean(-1),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean(-1),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(-1),
        }
        return losses.mean(-1), metrics
