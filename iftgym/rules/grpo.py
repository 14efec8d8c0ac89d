"""GRPO: group-relative policy optimisation, PPO's clipped surrogate without a critic, as TRL 1.16's
``GRPOTrainer`` computes it (trl/trainer/grpo_trainer.py).

Shao et al., "DeepSeekMath" (arXiv 2402.03300). Every step (or every ``num_iterations`` steps, GRPO's mu) the rule
samples ``n_episodes`` fresh episodes per seed from the current policy, in groups of ``num_generations`` (G) that
share one start (a prompt; the grid's start cell), and scores each by its total reward ``r_i``. A completion's
advantage is its reward against its group's (``_generate_and_score_completions``):

    A_i = (r_i - mean_group(r)) / (std_group(r) + 1e-4)      (std with Bessel's correction, ``scale_rewards="group"``)

``scale_rewards="batch"`` divides by the std of the whole batch instead (PPO-Lite), ``"none"`` not at all
(Dr. GRPO). Every token t of completion i then has the ratio ``rho = pi(a_t|s_t) / pi_old(a_t|s_t)`` (1 with
``num_iterations=1``, where ``pi_old`` is the current policy, detached) and the token loss (``_compute_loss``)

    l_it = -min(rho A_i, clip(rho, 1 - epsilon, 1 + epsilon_high) A_i) + beta k3_it,
    k3_it = exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1          (Schulman's k3 estimator of KL(pi || pi_ref))

or, for ``loss_type="cispo"`` (MiniMax-M1, arXiv 2506.13585), ``l_it = -sg(min(rho, epsilon_high)) A_i log pi``:
the ratio itself is capped at ``epsilon_high`` (TRL's ``epsilon_high`` is CISPO's epsilon_max there, recommended
5.0; with the default ``epsilon_high = epsilon = 0.2`` every positive-advantage token is capped at 0.2, as in TRL).
Two loss types replace the hard clip by a smooth weight:

* ``sapo`` (Soft Adaptive Policy Optimization, arXiv 2511.20347): ``l_it = -(4 / tau) sigmoid(tau (rho - 1)) A_i``,
  ``tau`` = ``sapo_temperature_pos`` (1.0) where ``A_i > 0``, else ``sapo_temperature_neg`` (1.05): the gate's
  gradient is the ratio's at ``rho = 1`` and fades as ``rho`` leaves it;
* ``vespo`` (arXiv 2602.10693): ``l_it = -sg(phi(w_i)) A_i log pi``, ``phi(w) = exp(lambda + k log w - lambda w)``
  (1 at ``w = 1``) of the completion's sequence ratio ``w_i = exp(sum_t log rho_t)`` (each token's log-ratio
  clamped to [-20, 20], ``log w`` to [log 1e-8, 20]), ``(k, lambda)`` = (``vespo_k_pos``, ``vespo_lambda_pos``)
  = (2, 3) where ``A_i >= 0``, else (``vespo_k_neg``, ``vespo_lambda_neg``) = (3, 2).

``luspo`` (arXiv 2602.05261) is the clipped surrogate with its own aggregation (below); its paper pairs it with
GSPO's sequence-level ratio, TRL's ``importance_sampling_level="sequence"``, which iftgym does not have: iftgym's
``luspo`` is TRL's with its default ``importance_sampling_level="token"``. The token losses are aggregated by
``loss_type`` exactly as TRL does, over the completions' tokens only:

* ``grpo`` and ``sapo``: each completion's mean token loss, then the mean over completions (length-biased);
* ``luspo``: each completion's summed token loss, then the mean over completions (a completion counts by its
  length);
* ``dr_grpo`` (arXiv 2503.20783): the batch's summed token loss over ``n_episodes * max_completion_length``;
* ``dapo`` (TRL's default, arXiv 2503.14476), ``cispo`` and ``vespo``: the summed token loss over the number of
  completion tokens of the whole generation batch (under ``torchrun`` the tokens of every process, divided by the
  number of processes, as TRL's ``num_items_in_batch / num_processes``);
* ``bnpo``: the summed token loss over this process's completion tokens (on one process, ``dapo``'s).

Differences from TRL, all where iftgym's worlds differ from a prompt dataset: a group's start is drawn as
:meth:`World.sample` draws one (TRL samples prompts from its dataset without replacement); every process of a
``torchrun`` run samples whole groups of its own, so ``scale_rewards="batch"`` takes its std over the process's
batch (TRL: over every process's); ``max_completion_length=0`` (the default) stands for the longest completion of
the step's batch, per seed (TRL's constant is its generation cap, 512 by default: set it to the world's cap for
Dr. GRPO's constant). TRL's options that need vLLM or a dataset of prompts (importance-sampling corrections, VESPO's
included, entropy masks, tools) are not here, nor is its ``importance_sampling_level="sequence"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from iftgym import distributed
from iftgym.policies.base import Policy
from iftgym.rules.onpolicy import GroupRule, check_groups, sampled_logps
from iftgym.types import StepBatch
from iftgym.validate import at_least, non_negative, one_of, positive

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
MEAN_PER_COMPLETION = ("grpo", "sapo")  # the loss types that average each completion's tokens first
OVER_BATCH_TOKENS = ("dapo", "cispo", "vespo")  # ... that divide by the generation batch's token count
SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class GRPOConfig:
    """TRL's ``GRPOConfig`` names and defaults: ``num_generations`` (the group size G), ``loss_type``, ``epsilon``
    and ``epsilon_high`` (``None``: ``epsilon``; CISPO's cap on the ratio for ``loss_type="cispo"``), ``beta`` (the
    weight of the k3 KL to the reference, the policy as the stage started; 0 builds no reference),
    ``scale_rewards``, ``num_iterations`` (mu: optimiser steps per sampled batch), ``max_completion_length``
    (``dr_grpo``'s constant; 0: the longest completion of the step's batch), ``sapo_temperature_pos`` and
    ``sapo_temperature_neg`` (``sapo``'s gate temperatures where the advantage is positive, and elsewhere) and
    ``vespo_k_pos``, ``vespo_lambda_pos``, ``vespo_k_neg``, ``vespo_lambda_neg`` (``vespo``'s gamma weight where the
    advantage is at least 0, and where it is negative). ``n_episodes`` is the episodes sampled per seed and batch
    (TRL's generation batch), a multiple of ``num_generations``."""

    n_episodes: int = 16
    num_generations: int = 8
    loss_type: str = "dapo"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    beta: float = 0.0
    scale_rewards: str = "group"
    num_iterations: int = 1
    max_completion_length: int = 0
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05
    vespo_k_pos: float = 2.0
    vespo_lambda_pos: float = 3.0
    vespo_k_neg: float = 3.0
    vespo_lambda_neg: float = 2.0

    def __post_init__(self) -> None:
        check_groups(self.n_episodes, self.num_generations, note="a group needs two completions to compare")
        one_of("loss_type", self.loss_type, LOSS_TYPES)
        positive("epsilon", self.epsilon)
        if self.epsilon_high is not None:
            positive("epsilon_high", self.epsilon_high)
        non_negative("beta", self.beta)
        one_of("scale_rewards", self.scale_rewards, SCALE_REWARDS)
        at_least("num_iterations", self.num_iterations, 1)
        at_least("max_completion_length", self.max_completion_length, 0, note="0 for the batch's longest completion")
        positive("sapo_temperature_pos", self.sapo_temperature_pos)
        positive("sapo_temperature_neg", self.sapo_temperature_neg)
        for name in ("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg"):
            non_negative(name, getattr(self, name))


def group_advantages(rewards: torch.Tensor, group_size: int, scale_rewards: str = "group") -> torch.Tensor:
    """``(K, B)`` advantages of rewards ``(K, B)`` whose consecutive runs of ``group_size`` form the groups: each
    reward minus its group's mean, divided by the group's (``"group"``) or the batch's (``"batch"``) standard
    deviation (Bessel-corrected, as TRL's ``nanstd``) plus 1e-4, or not divided (``"none"``)."""
    groups = rewards.unflatten(-1, (-1, group_size))  # (K, B / G, G)
    centred = (groups - groups.mean(-1, keepdim=True)).flatten(-2)
    if scale_rewards == "group":
        std = groups.std(-1, keepdim=True).expand_as(groups).flatten(-2)
    elif scale_rewards == "batch":
        std = rewards.std(-1, keepdim=True).expand_as(rewards)
    else:
        return centred
    return centred / (std + 1e-4)


def vespo_weights(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, c: GRPOConfig) -> torch.Tensor:
    """``(K, B, 1)`` VESPO's gamma weight ``phi(w) = exp(lambda + k log w - lambda w)`` of each completion's sequence
    ratio ``w = exp(sum_t log rho_t)``, from the token log-ratios ``(K, B, T)`` and the advantages ``(K, B, 1)``,
    without gradient (TRL's ``get_gamma_weights`` with no vLLM correction, its clamps included)."""
    with torch.no_grad():
        log_w = (log_ratio.clamp(-20.0, 20.0) * mask).sum(-1, keepdim=True).clamp(math.log(1e-8), 20.0)
        non_negative_advantage = advantages >= 0
        k = torch.where(non_negative_advantage, c.vespo_k_pos, c.vespo_k_neg)
        lam = torch.where(non_negative_advantage, c.vespo_lambda_pos, c.vespo_lambda_neg).clamp(min=1e-4)
        return torch.exp(lam + k * log_w - lam * torch.exp(log_w)).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    c: GRPOConfig,
    max_completion_length: torch.Tensor | float = 512,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(K,)`` GRPO losses and metrics for the settings ``c`` (its ``loss_type``, epsilons, ``beta`` and the soft
    weights' parameters), transcribed from TRL's ``GRPOTrainer._compute_loss`` (token-level importance sampling, no
    vLLM corrections, no entropy mask or bonus).

    ``logps`` ``(K, B, T)``: the current policy's log-probabilities of the sampled tokens, with gradient;
    ``old_logps``: the sampling policy's (``None``: ``logps`` detached, TRL's ``num_iterations=1``); ``ref_logps``:
    the reference's (only read when ``beta > 0``); ``advantages`` ``(K, B)``; ``mask`` ``(K, B, T)``: the
    completion tokens; ``max_completion_length``: ``dr_grpo``'s constant, a number or one per seed ``(K,)``.
    """
    loss_type, epsilon_low = c.loss_type, c.epsilon
    epsilon_high = c.epsilon if c.epsilon_high is None else c.epsilon_high
    mask = mask.expand(logps.shape).to(logps.dtype)
    old_logps = logps.detach() if old_logps is None else old_logps
    advantages = advantages.unsqueeze(-1)  # one per completion, broadcast over its tokens
    ratio = torch.exp(logps - old_logps)
    if loss_type == "cispo":
        token_loss = -torch.clamp(ratio, max=epsilon_high).detach() * advantages * logps
    elif loss_type == "sapo":
        temperature = torch.where(advantages > 0, c.sapo_temperature_pos, c.sapo_temperature_neg)
        token_loss = -torch.sigmoid(temperature * (ratio - 1)) * 4 / temperature * advantages
    elif loss_type == "vespo":
        phi = vespo_weights(logps - old_logps, advantages, mask, c)
        token_loss = -phi * advantages * logps
    else:  # grpo, bnpo, dr_grpo, dapo, luspo: PPO's clipped surrogate
        clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
        token_loss = -torch.min(ratio * advantages, clipped * advantages)
    if c.beta != 0.0:
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        token_loss = token_loss + c.beta * kl
    per_completion = (token_loss * mask).sum(-1)
    summed, tokens = per_completion.sum(-1), mask.sum((-2, -1))  # (K,) each: the summed loss, the completion tokens
    if loss_type in MEAN_PER_COMPLETION:
        loss = (per_completion / mask.sum(-1).clamp(min=1.0)).mean(-1)
    elif loss_type == "luspo":
        loss = per_completion.mean(-1)
    elif loss_type == "bnpo":
        loss = summed / tokens.clamp(min=1.0)
    elif loss_type == "dr_grpo":
        loss = summed / (logps.shape[-2] * torch.as_tensor(max_completion_length, dtype=logps.dtype))
    else:  # OVER_BATCH_TOKENS: the generation batch's token count (of every process, over the number of processes)
        loss = summed / distributed.mean_over_processes(tokens).clamp(min=1.0)

    def token_mean(values: torch.Tensor) -> torch.Tensor:
        return (values * mask).sum((-2, -1)) / tokens.clamp(min=1.0)

    metrics = {}
    if loss_type == "cispo":
        metrics["clip_ratio"] = token_mean(((ratio > epsilon_high) & (advantages > 0)).to(mask.dtype)).detach()
    elif loss_type == "vespo":
        metrics["phi"] = phi[..., 0].mean(-1)  # TRL's vespo/phi_seq_mean: the mean over completions
    elif loss_type != "sapo":  # the soft gate clips nothing
        low, high = (ratio < 1 - epsilon_low) & (advantages < 0), (ratio > 1 + epsilon_high) & (advantages > 0)
        metrics["clip_ratio"] = token_mean((low | high).to(mask.dtype)).detach()
    if c.beta != 0.0:
        metrics["kl"] = token_mean(kl).detach()
    return loss, metrics


@dataclass
class GroupSamples:
    """One sampled batch, as the loss reads it: the episodes, each one's total reward and advantage ``(K, B)``, and
    the sampling policy's and the reference's log-probabilities of its steps ``(K, B, T)`` (``None`` when not
    needed: ``num_iterations=1``, ``beta=0``)."""

    batch: StepBatch
    rewards: torch.Tensor
    advantages: torch.Tensor
    old_logps: torch.Tensor | None
    ref_logps: torch.Tensor | None


class GRPO(GroupRule):
    """Group-relative policy optimisation on fresh groups of the policy's own episodes (TRL's ``GRPOTrainer``)."""

    name = "grpo"
    config_class = GRPOConfig

    def score(self, policy: Policy, batch: StepBatch) -> GroupSamples:
        """The groups :meth:`GroupRule.collect` sampled (every ``num_iterations`` steps), with their rewards, group
        advantages and the log-probabilities the ratio and the KL need."""
        c = self.config
        # 1. (collect) n_episodes / G starts per seed, each answered G times by the current policy
        # 2. a completion's reward is its episode's total; its advantage is relative to its group
        rewards = batch.rewards.sum(-1)
        advantages = group_advantages(rewards, c.num_generations, c.scale_rewards)
        # 3. the sampling policy's log-probabilities (for the ratio of later iterations) and the reference's
        old_logps = sampled_logps(policy, batch)[0] if c.num_iterations > 1 else None
        ref_logps = sampled_logps(self.reference, batch)[0] if self.reference is not None else None
        return GroupSamples(batch, rewards, advantages, old_logps, ref_logps)

    def loss(self, policy: Policy, batch: None, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        s: GroupSamples = self.current_samples()
        # 4. the current policy's log-probabilities of the sampled steps, with gradient
        logps = sampled_logps(policy, s.batch)[0]
        # 5. TRL's clipped (or CISPO's, SAPO's, VESPO's) token losses plus beta * k3, aggregated by loss_type
        lengths = s.batch.mask.sum(-1)  # (K, B) completion lengths
        max_length = c.max_completion_length or lengths.amax(-1).clamp(min=1)
        loss, metrics = grpo_loss(logps, s.old_logps, s.ref_logps, s.advantages, s.batch.mask, c, max_length)
        groups = s.rewards.unflatten(-1, (-1, c.num_generations))
        return loss, {
            "loss": loss.detach(),
            **metrics,
            "reward": s.rewards.mean(-1),
            "reward_std": s.rewards.std(-1),
            "frac_reward_zero_std": (groups.std(-1) < 1e-8).float().mean(-1),
            "completion_length": lengths.float().mean(-1),
            "episode_return": s.rewards.mean(-1),
        }
