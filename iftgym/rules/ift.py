"""Intuitive Fine-Tuning (Hua et al., arXiv 2405.11870), following the official implementation.

Read top to bottom, one IFT step is:

1. Without gradient, run the policy on the ground-truth inputs and take its prediction at every step
   (``yhat_t = argmax pi(. | s*_t)``, or a sample).
2. Temporal residual connection: at every step reached by a target action, the input becomes
   ``(1 - lambda) * E(s*_t) + lambda * E(where yhat_{t-1} leads from s*_{t-1})``. As in the reference code, every
   input (the ground-truth term, the prediction term, the untouched prompt and padding) is read from ``E``, a
   frozen copy of the encoding table re-synced after every optimiser step: no gradient reaches a learned input
   embedding (TinyGPT's token table stays where it started), so lambda = 0 equals SFT in loss and in the gradient
   of every other weight. For tokens the successor is the predicted token, for slippery Frozen Lake the expected
   encoding under P. (``IFTConfig(embedding="live")`` reads the ground truth from the live table instead.)
3. Forward with gradient on the mixed inputs: step losses ``l_t = -log pi(a*_t | mixed input)``.
4. Relation propagation: weight each step by a normalised discounted sum of the later losses, *not* detached,
   so the gradient also flows through the weights (:func:`propagation_weights`).
5. Loss per sequence ``sum_t l_t w_t / n``, mean over the batch.

With ``lambda = 0`` and ``gamma = 0`` this is exactly SFT's loss (and SFT's update wherever the input encodings are
fixed, as for the Frozen Lake policies).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.common import frozen_table
from iftgym.types import StepBatch
from iftgym.validate import at_least, between, non_negative, one_of
from iftgym.world import World

KINDS = ("loss", "logps", "mask")
SIDES = ("left", "right")
NORMS = ("L1", "L2", "softmax", "log")
SCHEDULES = ("static", "linear", "noisy", "linear-noisy")
PREDICTIONS = ("greedy", "sample")
EMBEDDINGS = ("frozen", "live")
MIX_AT = ("targets", "runs")


@dataclass
class IFTConfig:
    """IFT's hyper-parameters, with the reference code's defaults.

    ``lam`` (lambda) mixes in the model's own prediction; ``schedule`` is ``"static"``, ``"linear"`` (from
    ``lam_min`` to ``lam`` over ``warmup_steps``), ``"noisy"`` (``lam * (1 + noise_std * eps)``, eps ~ N(0, 1)
    drawn once per step and seed, clamped to [0, 1]) or ``"linear-noisy"`` (the noise around the linear ramp, as the
    reference code allows). ``gamma``, ``kind``, ``side`` and ``norm`` configure relation propagation (see
    :func:`propagation_weights`); ``detach_weights`` cuts the gradient through the weights (an ablation the reference
    does not have: the weights still scale each step's loss, but only the losses are differentiated).
    ``prediction`` is ``"greedy"`` or ``"sample"``.
    ``embedding`` is where the ground-truth term (and the prompt) is read: ``"frozen"``, the re-synced copy, as in
    the reference code (a learned input embedding then gets no gradient at all), or ``"live"``, the policy's own
    table (an ablation: lambda = 0 then equals SFT in every gradient); the prediction term always reads the copy.
    ``mix_at``: which inputs are mixed. ``"targets"`` (the reference code's): every step whose input is a target
    token (the step before it has a target action), up to the last target of the sequence — on multi-turn chat data
    this includes the ``<eos>`` that ends each earlier assistant turn, whose own step (the next turn's first token)
    is not a target. ``"runs"`` (iftgym before): only steps inside a run of targets (the step before and the step
    itself both targets), which leaves that ``<eos>`` unmixed. The two agree on every single-answer batch (the
    grid's demonstrations, a prompt and its answer).
    """

    lam: float = 0.2
    schedule: str = "static"
    lam_min: float = 0.0
    warmup_steps: int = 100
    noise_std: float = 0.5
    gamma: float = 0.95
    kind: str = "loss"
    side: str = "left"
    norm: str = "L1"
    prediction: str = "greedy"
    embedding: str = "frozen"
    detach_weights: bool = False
    mix_at: str = "targets"

    def __post_init__(self) -> None:
        between("lam", self.lam, 0, 1)
        between("lam_min", self.lam_min, 0, 1)
        between("gamma", self.gamma, 0, 1)
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("kind", self.kind, KINDS)
        one_of("side", self.side, SIDES)
        one_of("norm", self.norm, NORMS)
        one_of("prediction", self.prediction, PREDICTIONS)
        one_of("embedding", self.embedding, EMBEDDINGS)
        one_of("mix_at", self.mix_at, MIX_AT)
        if self.lam_min > self.lam:  # refused in every schedule: a setting that could never be right
            raise ValueError(f"lam_min={self.lam_min} is out of range: expected lam_min <= lam={self.lam} (a linear "
                             "schedule rises from lam_min to lam)")  # fmt: skip
        at_least("warmup_steps", self.warmup_steps, 1)
        non_negative("noise_std", self.noise_std)

    def lam_at(self, step: int, generators: Sequence[torch.Generator]) -> float | torch.Tensor:
        """Lambda at optimiser step ``step`` under the schedule: one number for every seed, or for a noisy
        schedule one per seed, ``(K,)``, seed k's noise drawn from ``generators[k]``."""
        lam = self.lam
        if self.schedule.startswith("linear"):
            lam = self.lam_min + (self.lam - self.lam_min) * min(step / self.warmup_steps, 1.0)
        if self.schedule.endswith("noisy"):
            eps = torch.stack([torch.randn((), generator=g) for g in generators])
            return (lam * (1 + self.noise_std * eps)).clamp(0.0, 1.0)
        return lam


def _discounted_sums(values: torch.Tensor, gamma: float, reverse: bool) -> torch.Tensor:
    """``G_t = sum_{j>=t} gamma^(j-t) v_j`` along the last axis (``reverse=False``: sums to the right end;
    ``reverse=True``: ``sum_{j<=t} gamma^(t-j) v_j``, from the left end)."""
    return values @ _discount_kernel(values.shape[-1], gamma, reverse, values.dtype, values.device).T


@functools.lru_cache(maxsize=64)
def _discount_kernel(T: int, gamma: float, reverse: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(T, T)``: ``kernel[t, j] = gamma^(j - t)`` where ``j >= t`` (``reverse``: ``t >= j``), else 0. Made once per
    length: every step of a run asks for the same one."""
    idx = torch.arange(T, device=device)
    offset = idx[None, :] - idx[:, None]  # offset[t, j] = j - t
    if reverse:
        offset = -offset
    return torch.where(offset >= 0, gamma ** offset.clamp(min=0).to(dtype), torch.zeros((), dtype=dtype))


def propagation_weights(
    token_logps: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 0.95,
    kind: str = "loss",
    side: str = "left",
    norm: str = "L1",
) -> torch.Tensor:
    """IFT's relation-propagation weights, ``(..., T)``, averaging 1 over each sequence's unmasked steps, as the
    reference code computes them.

    Args:
        token_logps: per-step log-probabilities of the targets (zero where masked); gradients flow through.
        mask: boolean, True on target steps.
        gamma: discount in [0, 1]; 0 gives all-ones weights.
        kind: what is propagated: ``"loss"`` (``-logp / n``), ``"logps"`` (``-logp``) or ``"mask"`` (1).
        side: ``"left"``: each step gathers the discounted sum ``G`` of itself and the steps after it, and the
            weight grows with it — ``"L1"`` ``G``, ``"L2"`` ``G^2``, ``"softmax"`` (over unmasked steps) or
            ``"log"`` ``log(G + 1)``. ``"right"``: ``G`` is the discounted sum of the step and the steps before it;
            masked steps are set high (1e6), the smallest non-zero ``G`` of the whole batch (per seed, for ``(K, B,
            T)`` input) is added to every ``G``, and the weight is its inverse — ``1 / G``, ``1 / G^2``,
            ``softmax(1 / G)`` or ``1 / log(G + 1)`` — so early steps weigh more.
        norm: see ``side``.
    """
    between("gamma", gamma, 0, 1)
    one_of("kind", kind, KINDS)
    one_of("side", side, SIDES)
    one_of("norm", norm, NORMS)
    mask = mask.to(torch.bool)
    maskf = mask.to(token_logps.dtype)
    n = maskf.sum(-1, keepdim=True).clamp(min=1)
    if gamma == 0:
        return maskf.expand_as(token_logps).clone()
    if kind == "loss":
        units = -token_logps * maskf / n
    elif kind == "logps":
        units = -token_logps * maskf
    else:
        units = maskf.expand_as(token_logps)
    G = _discounted_sums(units, gamma, reverse=side == "right")
    if side == "left":
        weights = {"L1": G, "L2": G**2, "log": torch.log(G + 1), "softmax": G}[norm]
    else:
        G = G.masked_fill(~mask.expand_as(G), 1e6)
        batch = G.flatten(-2) if G.ndim >= 2 else G[None]  # the smallest non-zero sum of the (seed's) batch
        smallest = torch.where(batch != 0, batch, torch.full_like(batch, float("inf"))).amin(-1)
        G = G + (smallest[..., None, None] if G.ndim >= 2 else smallest)
        weights = {"L1": 1 / G, "L2": 1 / G**2, "log": 1 / torch.log(G + 1), "softmax": 1 / G}[norm]
    if norm == "softmax":
        weights = torch.softmax(weights.masked_fill(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
    weights = weights * maskf
    total = weights.sum(-1, keepdim=True)
    # A sequence whose weights all vanish (zero loss everywhere) falls back to uniform weights.
    return torch.where(total > 0, weights * n / total.clamp(min=torch.finfo(total.dtype).tiny), maskf)


def mixed_steps(mask: torch.Tensor, mix_at: str = "targets") -> torch.Tensor:
    """Where a step reached by a target action (the step before it is a target) may take a mixed input: at or
    before the sequence's last target (``"targets"``, the reference code's: an earlier chat turn's closing
    ``<eos>`` included) or only at a target step itself (``"runs"``)."""
    if mix_at == "runs":
        return mask
    return mask.flip(-1).cumsum(-1).flip(-1) > 0  # a target at or after the step


class IFT(Rule):
    """Intuitive Fine-Tuning: teacher forcing on inputs that mix in where the model's own predictions lead, with
    the step losses weighted by relation propagation (see the module doc, steps 1-5)."""

    name = "ift"
    data = "demos"
    config_class = IFTConfig

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        self.after_step(policy)

    def after_step(self, policy: Policy) -> None:
        """Re-sync the frozen copy of the encoding table with the policy's (a fixed table needs no copy)."""
        self.frozen_table = frozen_table(policy)

    def mixed_inputs(self, policy: Policy, batch: StepBatch, lam: float | torch.Tensor) -> torch.Tensor:
        """Steps 1-2: the ground-truth encodings with the model's own predictions mixed in, ``(K, B, T, D)``;
        ``lam`` is one lambda or one per seed ``(K,)``."""
        table = self.frozen_table if self.config.embedding == "frozen" else None
        truth = policy.seed_inputs(policy.embed(batch.ids, table))
        with torch.no_grad():
            logits = policy(truth)
            if self.config.prediction == "greedy":
                predicted = logits.argmax(-1)
            else:  # seed k samples from its own generator
                probs = torch.softmax(logits.float(), -1).cpu()
                predicted = torch.stack([
                    torch.multinomial(p.flatten(0, -2), 1, generator=g).view(p.shape[:-1])
                    for p, g in zip(probs, self.generators)
                ]).to(logits.device)  # fmt: skip
        ids = batch.ids.expand(predicted.shape)
        successor = policy.embed_distribution(
            self.world.successor_probs(ids[..., :-1], predicted[..., :-1]), self.frozen_table
        )
        mask = batch.mask.expand(predicted.shape)
        reached = (mask[..., :-1] & mixed_steps(mask, self.config.mix_at)[..., 1:]).unsqueeze(-1)
        if isinstance(lam, torch.Tensor):
            lam = lam.to(truth.device, truth.dtype).view(-1, 1, 1, 1)
        mixed_tail = torch.where(reached, (1 - lam) * truth[..., 1:, :] + lam * successor, truth[..., 1:, :])
        return torch.cat([truth[..., :1, :], mixed_tail], dim=-2)

    def loss(self, policy: Policy, batch: StepBatch, step: int) -> tuple[torch.Tensor, dict]:
        lam = self.config.lam_at(step, self.generators)
        logps = batch.logps(policy(self.mixed_inputs(policy, batch, lam)))
        c = self.config
        weights = propagation_weights(logps.detach() if c.detach_weights else logps, batch.mask, c.gamma, c.kind,
                                      c.side, c.norm)  # fmt: skip
        n = batch.mask.sum(-1).clamp(min=1)
        losses = (-logps * weights).sum(-1) / n
        metrics = {"loss": losses.detach().mean(-1), "lambda": torch.as_tensor(lam).float().expand(losses.shape[:-1])}
        return losses.mean(-1), metrics
