"""What PPO and REINFORCE share: a critic, KL-shaped rewards, generalised advantage estimation and the rule
base that sets them up. The rollouts are sampled in :meth:`CriticRule.collect` (``Rule.collect``: the loop calls it
before every step's loss) and only read by the losses. The group-relative rules (GRPO, RLOO) share the rule base
:class:`GroupRule`: their groups come from :func:`sample_groups`, their settings are checked by
:func:`check_groups`, and they read log-probabilities of sampled episodes with :func:`sampled_logps`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from iftgym.policies.base import Policy
from iftgym.rules.base import Rule, frozen_copy
from iftgym.rules.common import step_logps
from iftgym.types import StepBatch
from iftgym.validate import at_least
from iftgym.world import World


class ValueHead(nn.Module):
    """A per-seed linear critic on the policy's input encodings (tabular values for one-hot encodings)."""

    def __init__(self, n_seeds: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_seeds, dim))
        self.bias = nn.Parameter(torch.zeros(n_seeds))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(K, B, T, D) -> (K, B, T)``."""
        return torch.einsum("kbtd,kd->kbt", inputs, self.weight) + self.bias[:, None, None]


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates ``(..., T)``; with ``lam = 1`` they are returns-to-go minus ``values``.

    ``A_t = delta_t + gamma * lam * A_{t+1}`` along each episode's real steps, which must be one contiguous run
    (the worlds' batches are: a prompt, then the answer, then padding). Steps past the end bootstrap nothing; the
    last real step's successor is terminal or a time limit, valued 0 either way (a truncated rollout is a rare,
    short-horizon bias accepted here). The recursion runs over steps for every episode at once, in float64.
    """
    maskf = mask.to(rewards.dtype)
    starts = (maskf[..., 1:] > maskf[..., :-1]).sum(-1) + maskf[..., 0]
    if (starts > 1).any():
        raise ValueError("gae needs each episode's real steps to be one contiguous run of the mask")
    alive_next = torch.cat([maskf[..., 1:], torch.zeros_like(maskf[..., :1])], -1)
    next_values = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], -1)
    delta = (rewards + gamma * next_values * alive_next - values) * maskf
    advantages = delta.double().cpu().numpy().copy()
    for t in range(advantages.shape[-1] - 2, -1, -1):
        advantages[..., t] += gamma * lam * advantages[..., t + 1]
    return torch.from_numpy(advantages).to(rewards) * maskf


@dataclass
class Rollout:
    """On-policy episodes reduced to what PPO's and REINFORCE's losses read, all computed at sampling time.

    Both losses are sums over steps of terms that depend on a step only through its state, its action, its
    advantage and its return, each step weighted by its share ``1 / (episode length * episodes)`` of the
    per-episode means. So for a Markov policy the sums are taken per (state, action) — tensors ``(K, S, A)``, and
    per state ``(K, S)`` for the critic — and the loss costs one pass over the policy's table, however many and
    however long the episodes (``per_state``); a sequence policy keeps one entry per step, ``(K, B, T)``.
    Advantages are split by sign because PPO's clipping treats the two signs differently.
    """

    batch: StepBatch  # the sampled episodes
    per_state: bool
    weight: torch.Tensor  # summed step weights per entry
    adv_pos: torch.Tensor  # summed weight * max(advantage, 0)
    adv_neg: torch.Tensor  # summed weight * min(advantage, 0)
    old_logps: torch.Tensor  # log-probability of each entry's action when sampled
    state_weight: torch.Tensor  # summed step weights per input (state or step), for the critic and entropy
    ret: torch.Tensor  # summed weight * return per input
    ret_sq: torch.Tensor  # summed weight * return^2 per input

    def inputs(self, policy: Policy) -> torch.Tensor:
        """The input ids the losses evaluate the policy at: every id once (per state) or the episodes' steps."""
        if self.per_state:
            return torch.arange(self.state_weight.shape[-1], device=self.weight.device)[None]
        return self.batch.ids

    def log_probs(self, policy: Policy) -> torch.Tensor:
        """The policy's log-probabilities of every action at the inputs, with gradient: ``(K, S, A)`` per state,
        ``(K, B, T, A)`` per step (one forward pass serves :meth:`logps` and :meth:`entropy`)."""
        log_probs = torch.log_softmax(policy.logits_at(self.inputs(policy)).float(), -1)
        return log_probs[:, 0] if self.per_state else log_probs

    def logps(self, log_probs: torch.Tensor) -> torch.Tensor:
        """Log-probabilities aligned with the entries: ``(K, S, A)`` or the sampled actions' ``(K, B, T)``."""
        if self.per_state:
            return log_probs
        return log_probs.gather(-1, self.batch.actions.unsqueeze(-1)).squeeze(-1) * self.batch.mask

    def entropy(self, log_probs: torch.Tensor) -> torch.Tensor:
        """``(K,)`` the policy's entropy, averaged like the losses (per episode, then over episodes)."""
        return per_seed_sum(self.state_weight * -(log_probs.exp() * log_probs).sum(-1))

    def value_loss(self, policy: Policy, critic: ValueHead) -> torch.Tensor:
        """``(K,)`` squared error of the critic against the returns, ``sum w (V - R)^2`` expanded so that it reads
        the summed returns; it trains the critic only (the policy's encodings are detached)."""
        values = critic(policy.seed_inputs(policy.embed(self.inputs(policy))).detach())
        values = values[:, 0] if self.per_state else values
        return per_seed_sum(self.state_weight * values**2 - 2 * values * self.ret + self.ret_sq)


def per_seed_sum(values: torch.Tensor) -> torch.Tensor:
    """``(K, ...) -> (K,)``: the sum over every entry of each seed (the losses' sums over a :class:`Rollout`)."""
    return values.flatten(1).sum(-1)


def collect(
    policy: Policy,
    critic: ValueHead,
    reference: Policy | None,
    world: World,
    n_episodes: int,
    generators: Sequence[torch.Generator],
    gamma: float,
    gae_lambda: float,
    kl_coef: float,
    normalize_advantage: bool = False,
    per_state: bool = True,
) -> Rollout:
    """Sample episodes from the current policy, score them and reduce them to a :class:`Rollout`. The reward is
    penalised by ``kl_coef * (log pi - log pi_ref)`` per step when a reference policy is given (RLHF's KL
    penalty); advantages are standardised per seed when ``normalize_advantage``. A Markov policy's steps are summed
    per (state, action) unless ``per_state`` is False. Seed k's episodes come from ``generators[k]``."""
    with torch.no_grad():
        batch = world.sample(policy, n_episodes, generators)
        old_logps, old_table = sampled_logps(policy, batch)
        rewards = batch.rewards
        if reference is not None and kl_coef > 0:
            rewards = rewards - kl_coef * (old_logps - sampled_logps(reference, batch)[0]) * batch.mask
        values = _sampled_values(policy, critic, batch)
        advantages = gae(rewards, values, batch.mask, gamma, gae_lambda)
        returns = advantages + values
        if normalize_advantage:
            advantages = normalized(advantages, batch.mask)
        weight = batch.mask / (batch.lengths.clamp(min=1)[..., None] * batch.size)
        parts = torch.stack([weight, weight * advantages.clamp(min=0), weight * advantages.clamp(max=0)], 1)
        inputs = torch.stack([weight, weight * returns, weight * returns**2], 1)
        if not (policy.markov and per_state):
            return Rollout(batch, False, *parts.unbind(1), old_logps, *inputs.unbind(1))
        n_ids, n_actions = policy.embedding_table().shape[-2], policy.n_actions
        per_pair = _scatter(parts, batch.ids * n_actions + batch.actions, batch.mask, n_ids * n_actions)
        per_id = _scatter(inputs, batch.ids, batch.mask, n_ids)
        return Rollout(batch, True, *per_pair.view(-1, 3, n_ids, n_actions).unbind(1), old_table, *per_id.unbind(1))


def sampled_logps(policy: Policy, batch: StepBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(K, B, T)`` log-probabilities of the sampled actions (0 on padding), and for a Markov policy the
    ``(K, S, A)`` table they are read from (cheaper than a softmax per step); ``None`` for a sequence policy. Called
    with gradients on, the log-probabilities carry them."""
    if not policy.markov:
        return step_logps(policy, batch), None
    table = torch.log_softmax(policy.id_logits().float(), -1)
    seeds = torch.arange(policy.n_seeds, device=batch.ids.device)[:, None, None]
    return table[seeds, batch.ids, batch.actions] * batch.mask, table


class UniformActor:
    """K seeds of a policy that gives every action the same logit and runs no model: what :func:`sample_groups` hands
    :meth:`World.sample` in the policy's place to draw the groups' starts. A world draws an episode's start before the
    policy acts, and iftgym's worlds draw as many uniforms for a step whatever the policy's probabilities (one per
    episode to pick its action; Frozen Lake's moves too), so the starts, and every draw after them, are the ones the
    policy itself would have been given; the one step taken is discarded."""

    markov = True

    def __init__(self, seeds: Sequence[int], n_ids: int, n_actions: int, device: torch.device) -> None:
        self.seeds, self.n_ids, self.n_actions, self.device = list(seeds), n_ids, n_actions, device

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def logits_at(self, ids: torch.Tensor) -> torch.Tensor:
        """``(K, B, T, A)`` zeros at input ids ``(B, T)`` or ``(K, B, T)``."""
        return torch.zeros(self.n_seeds, *ids.shape[-2:], self.n_actions, device=self.device)

    def action_probs(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(K, n_ids, A)``: ``1 / A`` everywhere."""
        return torch.full((self.n_seeds, self.n_ids, self.n_actions), 1 / self.n_actions, dtype=dtype,
                          device=self.device)  # fmt: skip

    def embed(self, ids: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``(K, B, T, 1)`` zeros: no encoding is read."""
        return torch.zeros(self.n_seeds, *ids.shape[-2:], 1, device=self.device)

    def step(self, inputs: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        """``(K, B, A)`` zero logits and no memory."""
        return torch.zeros(*inputs.shape[:2], self.n_actions, device=self.device), None


def sample_groups(
    policy: Policy, world: World, n_groups: int, group_size: int, generators: Sequence[torch.Generator]
) -> StepBatch:
    """``n_groups * group_size`` on-policy episodes per seed, a ``(K, n_groups * group_size, T)`` batch whose
    episodes ``g * group_size ... (g + 1) * group_size - 1`` share one start (a prompt): what GRPO and RLOO compare
    a completion with. The starts are drawn as :meth:`World.sample` draws them (a prompt uniformly from the task, the
    grid's start cell), by its first step of ``n_groups`` episodes taken by a :class:`UniformActor` (no model runs),
    then each is answered ``group_size`` times by the policy (:meth:`World.sample_like`). Seed k draws from
    ``generators[k]`` alone."""
    stand_in = UniformActor(policy.seeds, world.n_ids, world.n_actions, policy.device)
    starts = world.sample(stand_in, n_groups, generators, max_steps=1)
    return world.sample_like(policy, starts, group_size, generators)


def check_groups(n_episodes: int, num_generations: int, note: str) -> None:
    """The group-relative rules' batch settings: groups of at least two completions (``note`` says why), at least
    one group per batch, and whole groups (``n_episodes`` a multiple of ``num_generations``)."""
    at_least("num_generations", num_generations, 2, note=note)
    at_least("n_episodes", n_episodes, num_generations, note="at least one group")
    if n_episodes % num_generations:
        whole = n_episodes // num_generations * num_generations
        raise ValueError(f"n_episodes={n_episodes} is not a multiple of num_generations={num_generations}: "
                         f"expected whole groups, e.g. n_episodes={whole}")  # fmt: skip


def _sampled_values(policy: Policy, critic: ValueHead, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T)`` the critic's values at the sampled steps; a Markov policy's inputs are read from a table of
    values per input id rather than encoded step by step."""
    if not policy.markov:
        return critic(policy.seed_inputs(policy.embed(batch.ids)))
    table = critic(policy.embedding_table().unsqueeze(1))[:, 0]  # (K, n_ids)
    return table[torch.arange(policy.n_seeds, device=batch.ids.device)[:, None, None], batch.ids]


def _scatter(values: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, size: int) -> torch.Tensor:
    """``(K, C, B, T)`` values at the real steps (``mask``) summed into ``(K, C, size)`` bins per seed by ``index``
    ``(K, B, T)`` (padding, most of a batch of uneven episodes, is skipped)."""
    K, C = values.shape[:2]
    real = mask.flatten().nonzero().squeeze(-1)  # positions in K * B * T
    bins = real // mask[0].numel() * size + index.flatten()[real]
    taken = values.transpose(0, 1).reshape(C, -1)[:, real]
    out = torch.zeros(C, K * size, dtype=values.dtype, device=values.device).index_add_(1, bins, taken)
    return out.view(C, K, size).transpose(0, 1)


def normalized(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Advantages standardised per seed over the real steps of the batch."""
    dims = tuple(range(1, advantages.dim()))
    n = mask.sum(dims, keepdim=True).clamp(min=1)
    mean = (advantages * mask).sum(dims, keepdim=True) / n
    std = (((advantages - mean) * mask) ** 2).sum(dims, keepdim=True).div(n).sqrt()
    return (advantages - mean) / (std + 1e-8) * mask


class CriticRule(Rule):
    """Base of the rules that train on their own rollouts: a critic trained beside the policy and, when the
    subclass's ``self.config.kl_coef > 0``, a frozen reference (the policy at the start of training) for the KL
    penalty. A subclass's ``collect`` stores ``self.rollout`` (from :meth:`fresh_rollout`), its ``loss`` reads
    :meth:`current_rollout`."""

    data = "env"

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        table = policy.embedding_table()
        self.critic = ValueHead(policy.n_seeds, table.shape[-1]).to(table.device)
        self.reference = frozen_copy(policy) if self.config.kl_coef > 0 else None
        self.rollout: Rollout | None = None  # what :meth:`collect` sampled last in this stage

    def current_rollout(self) -> Rollout:
        """The rollout the loss reads: the one :meth:`collect` sampled last."""
        if self.rollout is None:
            raise RuntimeError(f"rule {self.name!r} has no rollout: call collect(policy, step) before loss(), "
                               "as the training loop does")  # fmt: skip
        return self.rollout

    def parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters())

    def fresh_rollout(self, policy: Policy, gae_lambda: float, normalize_advantage: bool = False) -> Rollout:
        """New episodes from the current policy, scored with the config's ``n_episodes``, ``gamma`` and ``kl_coef``."""
        c = self.config
        return collect(policy, self.critic, self.reference, self.world, c.n_episodes, self.generators, c.gamma,
                       gae_lambda, c.kl_coef, normalize_advantage)  # fmt: skip


class GroupRule(Rule):
    """Base of the group-relative rules (GRPO, RLOO): fresh groups of the policy's own episodes every
    ``num_iterations`` steps and, when the subclass's ``self.config.beta > 0``, a frozen reference (the policy as
    the stage started). :meth:`collect` samples the groups, the subclass's :meth:`score` turns them into what its
    ``loss`` reads from :meth:`current_samples`."""

    data = "env"

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        super().setup(policy, world, generators)
        self.reference = frozen_copy(policy) if self.config.beta > 0 else None
        self.samples: Any = None  # what :meth:`collect` sampled last in this stage

    def collect(self, policy: Policy, step: int) -> None:
        """Fresh groups every ``num_iterations`` steps (at step 0 of the stage, then the batch is reused):
        ``n_episodes / num_generations`` starts per seed, each answered ``num_generations`` times by the current
        policy (:func:`sample_groups`), scored by :meth:`score` into ``self.samples``."""
        c = self.config
        if step % c.num_iterations:
            return
        with torch.no_grad():
            batch = sample_groups(policy, self.world, c.n_episodes // c.num_generations, c.num_generations,
                                  self.generators)  # fmt: skip
            self.samples = self.score(policy, batch)

    def score(self, policy: Policy, batch: StepBatch) -> Any:
        """What the loss reads of freshly sampled groups ``batch`` (called without gradients)."""
        raise NotImplementedError

    def current_samples(self) -> Any:
        """The groups the loss reads: the ones :meth:`collect` scored last."""
        if self.samples is None:
            raise RuntimeError(f"rule {self.name!r} has no samples: call collect(policy, step) before loss(), "
                               "as the training loop does")  # fmt: skip
        return self.samples
