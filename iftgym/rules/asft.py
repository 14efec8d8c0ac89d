"""Anchored Supervised Fine-Tuning (ASFT): DFT's probability-weighted token losses plus a KL anchor to the policy as
the stage started.

"Anchored Supervised Fine-Tuning" (arXiv 2509.23711) finds that DFT (:mod:`iftgym.rules.dft`) tightens
a lower bound on the RL objective but lets the policy drift without limit, and anchors it with a KL term to the
frozen reference ``pi_ref`` (the policy when the stage started), coefficient ``lambda`` (0.1 in the paper):

    L_ASFT = mean_t [ -sg(p_t) log p_t + lambda KL_t ],        p_t = pi(a*_t | s*_t)

with ``KL_t`` at every target position, in one of two forms (``kl``):

* ``"full"`` (default): the full-vocabulary ``KL(pi_ref || pi_theta) = sum_a pi_ref(a|s*_t) (log pi_ref(a|s*_t) -
  log pi_theta(a|s*_t))`` at the position. This is what the official code and LLaMA-Factory's ``asft_loss_func``
  compute (``F.kl_div(log_softmax(policy_logits), softmax(ref_logits)).sum(-1)``: the forward KL from the
  reference; Unsloth's port of ASFT notes that the paper writes the reverse one). Its gradient moves every
  action's probability at the position towards the reference's, not only the demonstrated one.
* ``"token"``: a target-token estimator, as NeMo-RL computes a KL penalty from the log-probabilities of the
  tokens in the batch only: Schulman's k3, ``exp(log p_ref,t - log p_t) - (log p_ref,t - log p_t) - 1`` at the
  demonstrated token. It needs no full-vocabulary pass of the reference (its log-probabilities of the stage's fixed
  demonstrations are computed once, in ``prepare``, and looked up at every step), but the token is the demonstration's,
  sampled from neither policy, so it is not an unbiased estimate of either KL: it is zero whenever ``p_t``
  equals ``p_ref,t``, whatever the rest of the distribution does, and it anchors only the demonstrated action's
  probability (the full form anchors the whole distribution at the position).

Both forms are averaged over the target tokens like DFT's term: ``average="sequence"`` (iftgym's default, each
demonstration's mean, then the batch mean) or ``"token"`` (the official code and LLaMA-Factory: the summed token
losses over the batch's target-token count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule, frozen_copy
from iftgym.rules.common import ReferenceLogps, step_log_probs, taken_logps
from iftgym.rules.dft import average_tokens
from iftgym.types import StepBatch
from iftgym.validate import non_negative, one_of
from iftgym.world import World

KL_FORMS = ("full", "token")
AVERAGES = ("sequence", "token")


@dataclass
class ASFTConfig:
    """``kl_coef``: the KL anchor's weight (the paper's lambda, 0.1); ``kl``: ``"full"``, the full-vocabulary
    ``KL(pi_ref || pi_theta)`` per target position (the official code, LLaMA-Factory), or ``"token"``, the k3
    estimator at the demonstrated token (NeMo-RL's way of computing a KL from the taken tokens); ``average``: as
    DFT's (``"token"`` is the official code's)."""

    kl_coef: float = 0.1
    kl: str = "full"
    average: str = "sequence"

    def __post_init__(self) -> None:
        non_negative("kl_coef", self.kl_coef)
        one_of("kl", self.kl, KL_FORMS)
        one_of("average", self.average, AVERAGES)


def full_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """``(..., )`` ``KL(pi_ref || pi_theta)`` over the last (action) axis, from log-probabilities of both."""
    ref_probs = ref_log_probs.exp()
    terms = ref_probs * (ref_log_probs - log_probs)
    return torch.where(ref_probs > 0, terms, torch.zeros_like(terms)).sum(-1)  # 0 log 0 = 0


def token_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 at the taken tokens: ``exp(r) - r - 1`` with ``r = log p_ref - log p`` (elementwise)."""
    log_ratio = ref_logps - logps
    return torch.exp(log_ratio) - log_ratio - 1


def asft_loss(
    log_probs: torch.Tensor,
    reference: torch.Tensor,
    batch: StepBatch,
    kl_coef: float = 0.1,
    kl: str = "full",
    average: str = "sequence",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(K,)`` ASFT losses and metrics from the policy's log-probabilities of every action ``(K, B, T, A)`` (with
    gradient) and the reference's, without gradient: of every action ``(K, B, T, A)`` for the ``"full"`` KL, of the
    demonstrated actions ``(K, B, T)`` for the ``"token"`` one."""
    logps = taken_logps(log_probs, batch)
    dft_tokens = -logps.exp().detach() * logps
    kl_tokens = full_kl(log_probs, reference) if kl == "full" else token_kl(logps, reference)
    loss = average_tokens(dft_tokens + kl_coef * kl_tokens, batch.mask, average)
    return loss, {
        "loss": loss.detach(),
        "dft": average_tokens(dft_tokens.detach(), batch.mask, average),
        "kl": average_tokens(kl_tokens.detach(), batch.mask, average),
        "nll": average_tokens(-logps.detach(), batch.mask, average),
    }


class ASFT(Rule):
    """Anchored SFT: DFT plus ``kl_coef`` times a KL to the policy as the stage started."""

    name = "asft"
    data = "demos"
    config_class = ASFTConfig

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        self.reference = frozen_copy(policy)  # the anchor: the policy as the stage started
        self.reference_logps = ReferenceLogps(self.reference)

    def prepare(self, policy: Policy, data: StepBatch) -> StepBatch:
        """For the token KL, the reference's log-probabilities of the stage's demonstrations, computed once for the
        whole stage (the full KL reads the reference's every action at every step)."""
        if self.config.kl == "token":
            self.reference_logps.prepare(data)
        return data

    def loss(self, policy: Policy, batch: StepBatch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        # 1. every action's log-probability at the demonstrations' steps, with gradient, and the reference's: of every
        # action for the full KL, of the demonstrated one (computed in prepare) for the token KL
        log_probs = step_log_probs(policy, batch)
        if c.kl == "full":
            with torch.no_grad():
                reference = step_log_probs(self.reference, batch)
        else:
            reference = self.reference_logps(batch)
        # 2. DFT's -sg(p_t) log p_t plus kl_coef times the KL at every target position, averaged
        return asft_loss(log_probs, reference, batch, c.kl_coef, c.kl, c.average)
