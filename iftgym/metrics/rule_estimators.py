"""The estimators inside the group-relative and importance-weighted rules, in expectation, computed exactly
(``docs/design.md`` §3, "The rules' estimators, measured exactly").

**The setting.** A Frozen Lake map with a horizon H: every episode of at most H moves from the start, stopping at a
hole or goal (what :meth:`FrozenLakeMDP.sample` with ``max_steps=H`` draws), is enumerated once
(:func:`enumerate_episodes`) with its transition probability, its reward (1 when it entered a goal), its length and
its visit counts ``N(s, a)``. For a Markov policy matrix ``pi`` the episode's probability is then
``p(tau) = P_trans(tau) prod pi(a|s)^N(s,a)`` and the gradient of its log-probability with respect to the policy's
logits is ``g(tau) = N - n pi`` (``n(s) = sum_a N(s, a)``). Everything below is a finite sum over these episodes, in
float64: no sampling.

**Group estimators** (:func:`group_gradient`). GRPO and RLOO sample G episodes from one start and weigh episode i's
``g`` by a weight ``omega_i`` built from the group's rewards (and, for some of GRPO's loss types, lengths): with
``num_iterations=1`` the gradient of the rule's loss is ``-sum_i omega_i g(tau_i)``. Because the G episodes are
exchangeable, ``E[sum_i omega_i g_i] = G E[omega_1 g_1] = G sum_tau p(tau) g(tau) E[omega_1 | tau]``, and
``omega_1`` depends on the others only through their (reward, length) keys, which take few values: the conditional
expectation is an exact sum over the multisets of G - 1 keys, each with its multinomial probability. The weights
are computed by the rules' own functions (:func:`~iftgym.rules.grpo.group_advantages`,
:func:`~iftgym.rules.rloo.leave_one_out_advantages`). The result is compared with the true gradient
``grad J = sum_tau p(tau) r(tau) g(tau)`` of the expected reward (the success probability within H). With several
starts (``prompts``, a list of maps sharing the policy's table, drawn uniformly, one group per start) both sides
are the prompts' means.

**Importance weights** (:func:`importance_weights_exact`). Episodes sampled from ``pi_old`` and reweighted towards
``pi``: the sequence weight ``w = prod_t rho_t``, ``rho_t = pi(a_t|s_t) / pi_old(a_t|s_t)``, has
``E_old[w] = sum_tau p_new(tau) = 1`` exactly and ``E_old[w f] = E_new[f]`` for every f; the token-level
alternatives (the mean of the per-token ratios, GRPO's ``loss_type="grpo"`` per-sequence weight; GSPO's and
iw-SFT's geometric mean ``exp(mean_t log rho_t)``; iw-SFT's clipped token ratio ``clip(rho_t, 0.2, 1.8)``) are
measured against the same quantities.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from iftgym.metrics.estimators import PolicyLike, policy_matrix
from iftgym.rules.grpo import group_advantages
from iftgym.rules.iw_sft import SEQUENCE_CLIP, TOKEN_CLIP
from iftgym.rules.rloo import leave_one_out_advantages
from iftgym.validate import at_least, one_of
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

MAX_EPISODES = 2_000_000  # enumerated episodes at most (their visit counts are S * A floats each)
ESTIMATORS = ("rloo", "grpo")
AGGREGATES = ("sequence", "grpo", "dapo", "dr_grpo")
WEIGHTS = ("sequence", "token_mean", "geometric", "iw_sft_sequence", "iw_sft_token")


@dataclass(frozen=True)
class Episodes:
    """Every episode of at most ``horizon`` moves of a map: transition probability ``(N,)``, reward ``(N,)`` (0 or 1),
    length ``(N,)`` and visit counts ``(N, S, A)``."""

    trans_prob: np.ndarray
    reward: np.ndarray
    length: np.ndarray
    counts: np.ndarray
    horizon: int

    def __len__(self) -> int:
        return len(self.reward)

    def log_probs(self, matrix: np.ndarray) -> np.ndarray:
        """``(N,)`` log-probability of each episode under the policy matrix ``(S, A)``."""
        return np.log(self.trans_prob) + np.einsum("nsa,sa->n", self.counts, np.log(matrix))

    def probs(self, matrix: np.ndarray) -> np.ndarray:
        """``(N,)`` probability of each episode under the policy matrix ``(S, A)`` (they sum to 1)."""
        return np.exp(self.log_probs(matrix))

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """``(N, S, A)`` gradient of each episode's log-probability with respect to the policy's logits,
        ``N(s, a) - n(s) pi(a | s)``."""
        return self.counts - self.counts.sum(-1, keepdims=True) * matrix


def enumerate_episodes(world: FrozenLakeMDP, horizon: int) -> Episodes:
    """Every episode of at most ``horizon`` moves from the start (deterministic or slippery moves), as
    :meth:`FrozenLakeMDP.sample` with ``max_steps=horizon`` would end them."""
    at_least("horizon", horizon, 1)
    S, A = world.n_states, world.n_actions
    # live partial episodes: state, transition probability, visit counts
    state = np.array([world.start])
    prob = np.ones(1)
    counts = np.zeros((1, S, A))
    done: list[tuple[np.ndarray, ...]] = []
    for t in range(1, horizon + 1):
        branches = [(a, k) for a in range(A) for k in range(world.next_cells.shape[-1])]
        new_state, new_prob, new_counts = [], [], []
        for a, k in branches:
            moved = world.next_probs[state, a, k]
            keep = moved > 0
            c = counts[keep].copy()
            c[np.arange(keep.sum()), state[keep], a] += 1
            new_state.append(world.next_cells[state[keep], a, k])
            new_prob.append(prob[keep] * moved[keep])
            new_counts.append(c)
        state, prob, counts = np.concatenate(new_state), np.concatenate(new_prob), np.concatenate(new_counts)
        if len(state) + sum(len(d[0]) for d in done) > MAX_EPISODES:
            raise ValueError(f"more than {MAX_EPISODES} episodes within horizon {horizon}: take a shorter horizon")
        ended = world.terminal[state] | (t == horizon)
        reward = world.goal_mask[state].astype(float)
        done.append((prob[ended], reward[ended], np.full(ended.sum(), t), counts[ended]))
        state, prob, counts = state[~ended], prob[~ended], counts[~ended]
    trans_prob, reward, length, all_counts = (np.concatenate(x) for x in zip(*done))
    return Episodes(trans_prob, reward, length.astype(float), all_counts, horizon)


def success_and_gradient(episodes: Episodes, matrix: np.ndarray) -> tuple[float, np.ndarray]:
    """The success probability within the horizon ``J`` and its exact gradient with respect to the logits
    ``(S, A)``: ``sum_tau p(tau) r(tau) g(tau)``."""
    p = episodes.probs(matrix)
    return float(p @ episodes.reward), np.einsum("n,nsa->sa", p * episodes.reward, episodes.scores(matrix))


def _multisets(n_keys: int, size: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every multiset of ``size`` key indices ``(M, size)`` and its probability when each is drawn from ``q``."""
    combos = np.array(list(itertools.combinations_with_replacement(range(n_keys), size)), dtype=np.int64)
    combos = combos.reshape(-1, size)
    multiplicity = np.stack([(combos == j).sum(-1) for j in range(n_keys)], -1)
    log_coef = math.lgamma(size + 1) - np.sum([[math.lgamma(m + 1) for m in row] for row in multiplicity], -1)
    return combos, np.exp(log_coef + (multiplicity * np.log(np.maximum(q, 1e-300))).sum(-1))


def group_weights(
    rewards: torch.Tensor, lengths: torch.Tensor, estimator: str, aggregate: str, scale_rewards: str = "group"
) -> torch.Tensor:
    """``(M, G)`` the weight ``omega_i`` of each episode's ``g`` in the rule's (negated) gradient, for groups of
    rewards and lengths ``(M, G)`` (one group per row, the batch of one step): the advantage (the rules' own
    functions) over the aggregation's denominator. ``"sequence"`` is the mean over completions of ``A_i logp_i``
    (RLOO's loss); ``"grpo"``, ``"dapo"`` (one process: also ``bnpo``) and ``"dr_grpo"`` (``max_completion_length``
    the group's longest, iftgym's default) are GRPO's loss types at ``num_iterations=1``."""
    G = rewards.shape[-1]
    adv = leave_one_out_advantages(rewards, G) if estimator == "rloo" else group_advantages(rewards, G, scale_rewards)
    if aggregate == "sequence":
        return adv / G
    if aggregate == "grpo":
        return adv / (G * lengths)
    if aggregate == "dapo":
        return adv / lengths.sum(-1, keepdim=True)
    return adv / (G * lengths.amax(-1, keepdim=True))  # dr_grpo


@dataclass(frozen=True)
class GroupGradient:
    """The exact expected update direction of a group estimator against the true gradient ``grad J`` (both
    ``(S, A)``, logits of a tabular policy). ``gain`` is the coefficient of the projection onto ``grad J``
    (``<E g_hat, grad J> / |grad J|^2``: 1 for an unbiased estimator), ``cosine`` the angle's cosine and
    ``relative_error`` ``|E g_hat - grad J| / |grad J|``; ``success`` is J, per prompt."""

    expected: np.ndarray
    true: np.ndarray
    success: tuple[float, ...]

    @property
    def gain(self) -> float:
        return float((self.expected * self.true).sum() / (self.true**2).sum())

    @property
    def cosine(self) -> float:
        return float((self.expected * self.true).sum() / (np.linalg.norm(self.expected) * np.linalg.norm(self.true)))

    @property
    def relative_error(self) -> float:
        return float(np.linalg.norm(self.expected - self.true) / np.linalg.norm(self.true))

    @property
    def perpendicular(self) -> float:
        """The size of the part of ``E g_hat`` orthogonal to ``grad J``, relative to ``|grad J|``."""
        return float(np.linalg.norm(self.expected - self.gain * self.true) / np.linalg.norm(self.true))


def expected_group_gradient(
    episodes: Episodes,
    matrix: np.ndarray,
    group_size: int,
    estimator: str = "rloo",
    aggregate: str = "sequence",
    scale_rewards: str = "group",
) -> np.ndarray:
    """``(S, A)`` the exact expectation of ``sum_i omega_i g(tau_i)`` over groups of ``group_size`` episodes of the
    policy ``matrix`` (see the module doc; ``omega`` from :func:`group_weights`)."""
    one_of("estimator", estimator, ESTIMATORS)
    one_of("aggregate", aggregate, AGGREGATES)
    at_least("group_size", group_size, 2)
    p = episodes.probs(matrix)
    keys, key_of = np.unique(np.stack([episodes.reward, episodes.length], -1), axis=0, return_inverse=True)
    key_of = key_of.reshape(-1)
    q = np.bincount(key_of, weights=p, minlength=len(keys))
    others, weight = _multisets(len(keys), group_size - 1, q)  # (M, G - 1), (M,)
    groups = np.concatenate([np.broadcast_to(np.arange(len(keys))[:, None, None], (len(keys), len(others), 1)),
                             np.broadcast_to(others, (len(keys), *others.shape))], -1)  # fmt: skip
    rewards, lengths = (torch.from_numpy(keys[groups, j].reshape(-1, group_size)) for j in (0, 1))
    omega = group_weights(rewards, lengths, estimator, aggregate, scale_rewards)[:, 0].numpy()
    mean_omega = omega.reshape(len(keys), len(others)) @ weight  # E[omega_1 | key of tau_1]
    return group_size * np.einsum("n,nsa->sa", p * mean_omega[key_of], episodes.scores(matrix))


def group_gradient(
    prompts: Episodes | Sequence[Episodes],
    policy: PolicyLike,
    group_size: int,
    estimator: str = "rloo",
    aggregate: str = "sequence",
    scale_rewards: str = "group",
    seed: int = 0,
) -> GroupGradient:
    """The exact expected update of a group estimator and the true gradient, for the policy (a Policy, whose seed
    ``seed`` is read, or a matrix ``(S, A)``), on one map's episodes or several (prompts drawn uniformly, one group
    per prompt)."""
    prompts = [prompts] if isinstance(prompts, Episodes) else list(prompts)
    matrix = _matrix(policy, seed)
    expected = np.mean([expected_group_gradient(e, matrix, group_size, estimator, aggregate, scale_rewards)
                        for e in prompts], 0)  # fmt: skip
    truths = [success_and_gradient(e, matrix) for e in prompts]
    return GroupGradient(expected, np.mean([g for _, g in truths], 0), tuple(j for j, _ in truths))


def _matrix(policy: PolicyLike, seed: int = 0) -> np.ndarray:
    if isinstance(policy, np.ndarray) and policy.ndim == 2:
        return policy.astype(float)
    return policy_matrix(policy)[seed]


def grpo_gain_binary(success: float, group_size: int, scale_rewards: str = "group") -> float:
    """With 0/1 rewards and one start, GRPO's expected update (``aggregate="sequence"``) is exactly
    ``c grad J``: ``c = a(1) - a(0)``, ``a(r)`` the expected advantage of an episode of reward r, from the
    binomial law of the other G - 1 rewards (RLOO's c is 1, Dr. GRPO's unscaled one ``(G - 1) / G``)."""
    G = group_size
    k = torch.arange(G, dtype=torch.float64)  # successes among the others
    law = torch.tensor([math.comb(G - 1, int(j)) * success**j * (1 - success) ** (G - 1 - j) for j in k.tolist()],
                       dtype=torch.float64)  # fmt: skip
    a = []
    for r in (0.0, 1.0):
        groups = (torch.arange(G - 1, dtype=torch.float64)[None] < k[:, None]).double()  # k ones, then zeros
        rewards = torch.cat([torch.full((G, 1), r, dtype=torch.float64), groups], -1)
        a.append(float(group_advantages(rewards, G, scale_rewards)[:, 0] @ law))
    return a[1] - a[0]


# -- importance weights -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportanceWeights:
    """Exact expectations under ``pi_old`` of each weight (``mean``, keyed by :data:`WEIGHTS`), of the weighted
    reward (``reward``, against ``success_new`` = J under ``pi``), and the weighted policy gradient at ``pi``
    (``gradient``, ``(S, A)``, against ``true_gradient``): the sequence weight's is ``E_old[w r grad log p]``, the
    per-token ratio's ``E_old[r sum_t rho_t grad log pi(a_t|s_t)]`` (GRPO's token-level surrogate, summed),
    GSPO's the gradient of ``E_old[r exp(mean_t log rho_t)]``. ``token_sum_ratio`` is ``E_old[sum_t rho_t] /
    E_old[L]`` (1 exactly: each token's ratio has conditional expectation 1). ``kl`` is ``KL(p_old || p_new)``
    over episodes."""

    mean: dict[str, float]
    reward: dict[str, float]
    success_old: float
    success_new: float
    gradient: dict[str, np.ndarray]
    true_gradient: np.ndarray
    token_sum_ratio: float
    kl: float

    def cosine(self, name: str) -> float:
        g, t = self.gradient[name], self.true_gradient
        return float((g * t).sum() / (np.linalg.norm(g) * np.linalg.norm(t)))

    def relative_error(self, name: str) -> float:
        return float(np.linalg.norm(self.gradient[name] - self.true_gradient) / np.linalg.norm(self.true_gradient))


def importance_weights_exact(episodes: Episodes, old: np.ndarray, new: np.ndarray) -> ImportanceWeights:
    """Every importance weight's exact expectations over episodes sampled from the policy matrix ``old``, towards
    ``new`` (both ``(S, A)``, full support)."""
    p_old = episodes.probs(old)
    log_rho = np.log(new) - np.log(old)  # (S, A) per-token log-ratio of each (state, action)
    length = episodes.length
    log_w = np.einsum("nsa,sa->n", episodes.counts, log_rho)
    weights = {
        "sequence": np.exp(log_w),
        "token_mean": np.einsum("nsa,sa->n", episodes.counts, np.exp(log_rho)) / length,
        "geometric": np.exp(log_w / length),
        "iw_sft_sequence": np.clip(np.exp(log_w / length), *SEQUENCE_CLIP),
        "iw_sft_token": np.einsum("nsa,sa->n", episodes.counts, np.clip(np.exp(log_rho), *TOKEN_CLIP)) / length,
    }
    r = episodes.reward
    scores = episodes.scores(new)  # gradient of log p_new(tau)
    token_scores = episodes.counts * np.exp(log_rho) - (episodes.counts * np.exp(log_rho)).sum(-1, keepdims=True) * new
    gradient = {
        "sequence": np.einsum("n,nsa->sa", p_old * r * weights["sequence"], scores),
        "token": np.einsum("n,nsa->sa", p_old * r, token_scores),
        "geometric": np.einsum("n,nsa->sa", p_old * r * weights["geometric"] / length, scores),
    }
    p_new = episodes.probs(new)
    return ImportanceWeights(
        mean={k: float(p_old @ w) for k, w in weights.items()},
        reward={k: float(p_old @ (w * r)) for k, w in weights.items()},
        success_old=float(p_old @ r),
        success_new=float(p_new @ r),
        gradient=gradient,
        true_gradient=success_and_gradient(episodes, new)[1],
        token_sum_ratio=float(p_old @ np.einsum("nsa,sa->n", episodes.counts, np.exp(log_rho)) / (p_old @ length)),
        kl=float(p_old @ (episodes.log_probs(old) - episodes.log_probs(new))),
    )


def perturbed(matrix: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """A policy matrix whose logits are ``log matrix`` plus ``scale`` times standard normal noise (seeded): the
    current policy some updates after the sampling one."""
    logits = np.log(matrix) + scale * np.random.default_rng(seed).standard_normal(matrix.shape)
    logits -= logits.max(-1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
