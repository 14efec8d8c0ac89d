"""Entropy-Adaptive Fine-Tuning (EAFT): supervised fine-tuning whose every token loss is weighted by how uncertain
the model is at that position, measured by the entropy of its top-k distribution and held constant.

"Entropy-Adaptive Fine-Tuning: Resolving Confident Conflicts to Mitigate Forgetting" (arXiv 2601.02151, code
PRIS-CV/EAFT) traces SFT's forgetting to "confident conflicts", tokens where the model is sure (low entropy) of
something other than the target, and scales each token's loss by the normalised entropy of the renormalised top-k
distribution at the position:

    L_EAFT = - sum_t sg(w_t) log p_t,      w_t = (H_topk(s*_t) / ln k)^alpha,
    H_topk = - sum_{a in top-k} q(a) log q(a),  q = pi(. | s*_t) restricted to its k largest logits, renormalised

(k = 20, alpha = 1 in the paper: linear gating; weights in [0, 1]). The implementations normalise differently,
which ``normalize`` makes an option:

* ``"ln_k"`` (default): divide by ``ln k``, the paper's ``H / ln K``; axolotl's ``eaft_loss`` with
  ``normalize=True`` (its default now), which takes ``k_eff = min(k, vocabulary, 32)`` (32: its Triton kernel's
  cap) and divides by ``ln k_eff``, adding 1e-10 inside the log. Here ``k_eff = min(k, actions)`` and the log is
  exact (a difference below 1e-9 in a weight);
* ``"llama-factory"``: divide by the constant 3.0 (LLaMA-Factory's ``_eaft_cross_entropy``: top 20 logits, always,
  and ``entropy / 3.0``, about ``ln 20 = 2.996``), whatever k is. With fewer than 20 actions LLaMA-Factory's
  ``torch.topk(k=20)`` would fail; here it takes ``min(k, actions)`` and still divides by 3, so on a 4-action grid
  the weights stay below ``ln 4 / 3 = 0.46``;
* ``"none"``: no normalisation, ``H^alpha`` (axolotl's first version, before ``normalize`` was added).

All three aggregate like SFT: LLaMA-Factory and axolotl sum the weighted token losses over the batch's target
tokens (``average="token"``); iftgym's default ``"sequence"`` averages each demonstration first, as its SFT does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.common import step_log_probs, taken_logps
from iftgym.rules.dft import average_tokens
from iftgym.types import StepBatch
from iftgym.validate import at_least, non_negative, one_of

NORMALIZATIONS = ("ln_k", "llama-factory", "none")
AVERAGES = ("sequence", "token")
LLAMA_FACTORY_DIVISOR = 3.0  # LLaMA-Factory's constant, about ln 20


@dataclass
class EAFTConfig:
    """``k``: the top-k the entropy is taken over (20; ``min(k, actions)`` are used); ``alpha``: the weight's power
    (1, linear gating; 0 is SFT); ``normalize``: ``"ln_k"`` (the paper, axolotl), ``"llama-factory"`` (divide by
    3.0) or ``"none"``; ``average``: as SFT's (``"token"`` is LLaMA-Factory's and axolotl's)."""

    k: int = 20
    alpha: float = 1.0
    normalize: str = "ln_k"
    average: str = "sequence"

    def __post_init__(self) -> None:
        at_least("k", self.k, 2, note="an entropy needs two actions")
        non_negative("alpha", self.alpha)
        one_of("normalize", self.normalize, NORMALIZATIONS)
        one_of("average", self.average, AVERAGES)


def topk_entropy(log_probs: torch.Tensor, k: int) -> torch.Tensor:
    """``(...,)`` the entropy of the distribution over the ``min(k, A)`` most likely of the ``A`` actions on the last
    axis, renormalised (log-probabilities or logits give the same: the renormalisation removes the offset)."""
    top = log_probs.topk(min(k, log_probs.shape[-1]), dim=-1).values
    top = torch.log_softmax(top, -1)
    return -(top.exp() * top).sum(-1)


def eaft_weights(log_probs: torch.Tensor, k: int = 20, alpha: float = 1.0, normalize: str = "ln_k") -> torch.Tensor:
    """``(K, B, T)`` EAFT's token weights ``(H_topk / norm)^alpha`` from every action's log-probability, without
    gradient."""
    with torch.no_grad():
        entropy = topk_entropy(log_probs, k)
        k_eff = min(k, log_probs.shape[-1])
        if normalize == "ln_k" and k_eff > 1:
            entropy = entropy / math.log(k_eff)
        elif normalize == "llama-factory":
            entropy = entropy / LLAMA_FACTORY_DIVISOR
        return entropy.pow(alpha)


class EAFT(Rule):
    """Entropy-Adaptive Fine-Tuning: SFT's token losses ``-log p_t`` weighted by ``sg((H_topk / ln k)^alpha)``."""

    name = "eaft"
    data = "demos"
    config_class = EAFTConfig

    def loss(self, policy: Policy, batch: StepBatch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        # 1. every action's log-probability at the demonstrations' steps (the target's, with gradient)
        log_probs = step_log_probs(policy, batch)
        logps = taken_logps(log_probs, batch)
        # 2. each position's weight from the entropy of its renormalised top-k distribution, held constant
        weights = eaft_weights(log_probs.detach(), c.k, c.alpha, c.normalize)
        # 3. the weighted negative log-likelihood, averaged as SFT
        loss = average_tokens(-weights * logps, batch.mask, c.average)
        return loss, {
            "loss": loss.detach(),
            "weight": average_tokens(weights, batch.mask, c.average),
            "nll": average_tokens(-logps.detach(), batch.mask, c.average),
        }
