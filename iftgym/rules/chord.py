"""CHORD: GRPO on the policy's own samples mixed with an SFT term on the demonstrations, each demonstrated token
weighted by ``sg(p_t (1 - p_t))``, the mix ``mu`` warming up and then decaying over the stage.

"On-Policy RL Meets Off-Policy Experts: Harmonizing Supervised Fine-Tuning and Reinforcement Learning via Dynamic
Weighting" (arXiv 2508.11408; code: Trinity-RFT's ``MIXCHORDPolicyLossFn``, policy loss ``mix_chord``) treats the
expert data as an auxiliary objective of on-policy RL rather than a separate stage:

    L_CHORD = (1 - mu) L_GRPO + mu L_SFT-phi,      L_SFT-phi = mean_t -sg(phi(p_t)) log p_t,   phi(p) = p (1 - p)

``mu`` (the global weight, CHORD-mu) follows the official ``mu_schedule_function``: a linear warm-up from 0 to
``mu_peak`` over ``mu_warmup_steps``, then a cosine decay to ``mu_valley`` over ``mu_decay_steps``, then
``mu_valley``, counted in the stage's optimiser steps (so ``sft+chord`` starts the schedule when its stage starts).
``phi`` (CHORD-phi, the token weight) down-weights tokens the policy finds either certain or hopeless, keeping the
expert's signal where the policy is unsure; ``phi=false`` is plain SFT's ``-log p_t``. The official example
(``examples/mix_chord/mix_chord.yaml``) uses warm-up 200, decay 400, peak 0.5, valley 0.02 with phi (CHORD-mu alone:
0, 200, 0.9, 0.05; CHORD-phi alone: a constant 0.1); the defaults here keep its peak, valley and the 1 : 2 ratio
of warm-up to decay on a 150-step scale, as iftgym's stages are shorter (set them to your stage's length).

The GRPO part is :mod:`iftgym.rules.grpo` itself (its sampling, group advantages and ``grpo_loss``, with TRL's
``loss_type`` and settings, default ``dapo``); the official code uses its own PPO policy loss there
(``PPOPolicyLossFn``), whose aggregation is not transcribed here. The SFT term is averaged over the demonstrations'
tokens as ``sft_average`` says (``"token"``, the official ``use_token_level_loss_in_sft``, by default). The rule
trains on demonstrations (``data = "demos"``: the loop hands it a minibatch of them every step) and samples its own
groups from the world in ``collect``, so it needs both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.common import step_logps
from iftgym.rules.dft import average_tokens
from iftgym.rules.grpo import GRPO, GRPOConfig
from iftgym.types import StepBatch
from iftgym.validate import at_least, between, one_of
from iftgym.world import World

AVERAGES = ("sequence", "token")


@dataclass
class CHORDConfig(GRPOConfig):
    """GRPO's settings first (inherited: TRL's names and defaults, see :class:`iftgym.rules.grpo.GRPOConfig`), then
    the mu schedule (``mu_peak``, ``mu_valley``, ``mu_warmup_steps``, ``mu_decay_steps``: the official names),
    ``phi`` (weight the SFT term's tokens by ``p (1 - p)``) and ``sft_average`` (the SFT term's average over
    tokens)."""

    mu_peak: float = 0.5
    mu_valley: float = 0.02
    mu_warmup_steps: int = 50
    mu_decay_steps: int = 100
    phi: bool = True
    sft_average: str = "token"

    def __post_init__(self) -> None:
        super().__post_init__()  # GRPO's own checks
        between("mu_peak", self.mu_peak, 0, 1)
        between("mu_valley", self.mu_valley, 0, 1)
        at_least("mu_warmup_steps", self.mu_warmup_steps, 0)
        at_least("mu_decay_steps", self.mu_decay_steps, 0)
        one_of("sft_average", self.sft_average, AVERAGES)

    def grpo_config(self) -> GRPOConfig:
        """The GRPO part's config: this config's GRPO settings."""
        return GRPOConfig(**{field.name: getattr(self, field.name) for field in fields(GRPOConfig)})

    def mu_at(self, step: int) -> float:
        """``mu`` at optimiser step ``step`` of the stage, as the official ``mu_schedule_function``."""
        if step < self.mu_warmup_steps:
            return step / self.mu_warmup_steps * self.mu_peak
        if step >= self.mu_warmup_steps + self.mu_decay_steps:
            return self.mu_valley
        cosine = 0.5 * (1 + math.cos(math.pi * (step - self.mu_warmup_steps) / self.mu_decay_steps))
        return (self.mu_peak - self.mu_valley) * cosine + self.mu_valley


def sft_phi_loss(logps: torch.Tensor, mask: torch.Tensor, phi: bool = True, average: str = "token") -> torch.Tensor:
    """``(K,)`` CHORD's SFT term from the demonstrated actions' log-probabilities ``(K, B, T)``: the token losses
    ``-sg(p (1 - p)) log p`` (``phi``) or ``-log p``, averaged over the tokens ``mask`` keeps."""
    weights = (logps.exp() * -torch.expm1(logps)).detach() if phi else torch.ones_like(logps)
    return average_tokens(-weights * logps, mask, average)


class CHORD(Rule):
    """CHORD: ``(1 - mu) GRPO + mu SFT-phi``, GRPO on fresh groups of the policy's own episodes, the SFT term on the
    step's demonstrations, ``mu`` on a warm-up-then-decay schedule over the stage."""

    name = "chord"
    data = "demos"
    config_class = CHORDConfig

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        self.grpo = GRPO(self.config.grpo_config())
        self.grpo.name = self.name
        self.grpo.setup(policy, world, generators)

    def batch_weight(self, batch: StepBatch | None) -> torch.Tensor | float:
        """What the SFT term is a mean over (its demonstrations' target tokens with ``sft_average="token"``, else the
        demonstrations), so that micro-batches add up to the one-batch step; the GRPO part is the same on every
        micro-batch of a step (its groups are sampled once, in ``collect``), so any weights summing to 1 keep it."""
        if batch is None:
            return 1.0
        return batch.mask.sum((-2, -1)) if self.config.sft_average == "token" else float(batch.size)

    def collect(self, policy: Policy, step: int) -> None:
        """GRPO's groups, sampled as :class:`GRPO` samples them (every ``num_iterations`` steps)."""
        self.grpo.collect(policy, step)

    def loss(self, policy: Policy, batch: StepBatch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        # 1. GRPO's loss on the sampled groups, and its metrics
        grpo_loss, metrics = self.grpo.loss(policy, None, step)
        # 2. the SFT term on the demonstrations, each token weighted by sg(p (1 - p))
        logps = step_logps(policy, batch)
        sft_loss = sft_phi_loss(logps, batch.mask, c.phi, c.sft_average)
        # 3. mixed by mu at this step of the schedule
        mu = c.mu_at(step)
        loss = (1 - mu) * grpo_loss + mu * sft_loss
        metrics.pop("loss")
        return loss, {
            "loss": loss.detach(),
            "grpo_loss": grpo_loss.detach(),
            "sft_loss": sft_loss.detach(),
            "mu": torch.full_like(loss.detach(), mu),
            "nll": average_tokens(-logps.detach(), batch.mask, c.sft_average),
            **metrics,
        }
