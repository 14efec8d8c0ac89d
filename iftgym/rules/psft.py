"""Proximal SFT (PSFT): supervised fine-tuning as PPO's clipped surrogate on the demonstrations, every demonstrated
token an action of advantage 1, the ratio taken to the previous policy.

"Proximal Supervised Fine-Tuning" (arXiv 2508.17784) reads SFT as a policy gradient with a constant
positive advantage on the demonstration's tokens and borrows PPO's trust region to keep each update near the policy
that started it:

    L_PSFT = - mean_t min(r_t A, clip(r_t, 1 - epsilon, 1 + epsilon) A),   A = 1,
    r_t = pi_theta(a*_t | s*_t) / pi_old(a*_t | s*_t)

so a token whose probability has already grown by more than ``1 + epsilon`` since ``pi_old`` gets no more gradient,
while one that fell keeps SFT's. ``pi_old`` is refreshed every ``update_epochs`` optimiser steps, as iftgym's PPO
refreshes its rollouts (at step 0 of the stage, then every ``update_epochs``): with ``update_epochs=1`` every ratio
is 1 and PSFT's gradient is SFT's. Token losses are averaged as SFT's (``average``; the paper's verl trainer takes
one mean over the batch's tokens, ``"token"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule, frozen_copy
from iftgym.rules.common import step_logps
from iftgym.rules.dft import average_tokens
from iftgym.types import StepBatch
from iftgym.validate import at_least, one_of, positive
from iftgym.world import World

AVERAGES = ("sequence", "token")


@dataclass
class PSFTConfig:
    """``clip_range``: PPO's epsilon (0.2); ``update_epochs``: optimiser steps between refreshes of the old policy
    (PPO's, 4); ``average``: as SFT's."""

    clip_range: float = 0.2
    update_epochs: int = 4
    average: str = "sequence"

    def __post_init__(self) -> None:
        positive("clip_range", self.clip_range)
        at_least("update_epochs", self.update_epochs, 1)
        one_of("average", self.average, AVERAGES)


def psft_token_losses(logps: torch.Tensor, old_logps: torch.Tensor, clip_range: float = 0.2) -> torch.Tensor:
    """``(K, B, T)`` PPO's clipped surrogate with advantage 1, negated: ``-min(r, clip(r, 1 - eps, 1 + eps))``."""
    ratio = torch.exp(logps - old_logps)
    return -torch.minimum(ratio, ratio.clamp(1 - clip_range, 1 + clip_range))


class PSFT(Rule):
    """Proximal SFT: PPO's clipped ratio to the previous policy on the demonstrated tokens, advantage 1."""

    name = "psft"
    data = "demos"
    config_class = PSFTConfig

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        self.old = frozen_copy(policy)  # pi_old, refreshed in place by collect

    def collect(self, policy: Policy, step: int) -> None:
        """The old policy becomes the current one every ``update_epochs`` steps (at step 0 of the stage first)."""
        if step % self.config.update_epochs == 0:
            self.old.load_state_dict(policy.state_dict())

    def loss(self, policy: Policy, batch: StepBatch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        # 1. the demonstrated actions' log-probabilities, with gradient, and the old policy's
        logps = step_logps(policy, batch)
        with torch.no_grad():
            old_logps = step_logps(self.old, batch)
        # 2. PPO's clipped surrogate with advantage 1 per token, averaged as SFT
        loss = average_tokens(psft_token_losses(logps, old_logps, c.clip_range), batch.mask, c.average)
        ratio = torch.exp(logps.detach() - old_logps)
        return loss, {
            "loss": loss.detach(),
            "clip_fraction": average_tokens((ratio > 1 + c.clip_range).float(), batch.mask, c.average),
            "ratio": average_tokens(ratio, batch.mask, c.average),
            "nll": average_tokens(-logps.detach(), batch.mask, c.average),
        }
