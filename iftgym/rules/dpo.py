"""Direct Preference Optimisation (sigmoid loss), offline or online.

The model's preference is estimated by contrasting the chosen trajectory with a rejected one, both measured
relative to a frozen reference policy (by default the policy as it was when training started). Offline, the
rejected trajectories come from the data and drift out of the policy's distribution as it trains; online, they
are sampled from the current policy at every step, and the demonstration is the chosen one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule, frozen_copy
from iftgym.rules.common import pair_step_logps, sequence_logps
from iftgym.types import PairBatch, StepBatch
from iftgym.validate import at_least, between, positive
from iftgym.world import World


@dataclass
class DPOConfig:
    """``beta``: inverse temperature of the implicit reward (> 0); ``label_smoothing`` in [0, 0.5):
    the assumed probability that a preference label is flipped (conservative DPO); ``online``: sample the
    rejected trajectories from the current policy; ``n_samples``: how many per seed and step when online."""

    beta: float = 0.1
    label_smoothing: float = 0.0
    online: bool = False
    n_samples: int = 8

    def __post_init__(self) -> None:
        positive("beta", self.beta)
        between("label_smoothing", self.label_smoothing, 0, 0.5, include_high=False)
        at_least("n_samples", self.n_samples, 1)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair sigmoid DPO losses and the implicit rewards ``beta * (logp_pi - logp_ref)`` of both sides."""
    logits = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


class DPO(Rule):
    """DPO's sigmoid loss against a frozen reference: offline on (chosen, rejected) pairs, or online with the
    demonstration as chosen and the current policy's own samples as rejected."""

    name = "dpo"
    config_class = DPOConfig
    fixed = {"online": False}

    def __init__(self, config: DPOConfig | None = None) -> None:
        super().__init__(config)
        if self.config.online:
            self.name = "dpo-online"

    @property
    def data(self) -> str:
        return "demos" if self.config.online else "pairs"

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        self.reference = frozen_copy(policy)

    def prepare(self, policy: Policy, data: PairBatch | StepBatch) -> PairBatch | StepBatch:
        """Offline, the reference's log-probabilities of the fixed pairs, computed once for the whole stage."""
        if self.config.online:
            return data
        with torch.no_grad():
            reference = torch.stack([sequence_logps(self.reference, data.chosen),
                                     sequence_logps(self.reference, data.rejected)], dim=-1)  # fmt: skip
        return PairBatch(data.chosen, data.rejected, reference)

    def loss(self, policy: Policy, batch: PairBatch | StepBatch, step: int) -> tuple[torch.Tensor, dict]:
        if self.config.online:
            # Each demonstration is preferred over what the policy does now from the same start (its own prompt).
            rejected = self.world.sample_like(policy, batch, self.config.n_samples, self.generators)
            chosen = batch
        else:
            chosen, rejected = batch.chosen, batch.rejected
        if isinstance(batch, PairBatch) and batch.reference is not None:
            ref_chosen, ref_rejected = batch.reference.unbind(-1)
        else:
            with torch.no_grad():
                ref_chosen = sequence_logps(self.reference, chosen)
                ref_rejected = sequence_logps(self.reference, rejected)
        if self.config.online:  # the samples have a shape of their own
            pi_chosen, pi_rejected = sequence_logps(policy, chosen), sequence_logps(policy, rejected)
        else:
            pi_chosen, pi_rejected = (logps.sum(-1) for logps in pair_step_logps(policy, batch))
        if self.config.online:  # demonstration b against each of its own n_samples samples
            n = self.config.n_samples
            pi_chosen, ref_chosen = (x.repeat_interleave(n, dim=-1) for x in (pi_chosen, ref_chosen))
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            pi_chosen, pi_rejected, ref_chosen, ref_rejected, self.config.beta, self.config.label_smoothing
        )
        chosen_rewards, rejected_rewards = torch.broadcast_tensors(chosen_rewards, rejected_rewards)
        margins = chosen_rewards - rejected_rewards
        metrics = {
            "loss": losses.mean(-1).detach(),
            "rewards/chosen": chosen_rewards.mean(-1),
            "rewards/rejected": rejected_rewards.mean(-1),
            "rewards/margins": margins.mean(-1),
            "rewards/accuracies": (margins > 0).float().mean(-1),
            "logps/chosen": pi_chosen.detach().mean(-1),
            "logps/rejected": pi_rejected.detach().mean(-1),
        }
        return losses.mean(-1), metrics


class OnlineDPO(DPO):
    """Online DPO: DPO whose rejected trajectories are sampled from the current policy at every step."""

    fixed = {"online": True}
