"""How much a policy prefers a demonstration's actions, estimated four ways, and the bias of each
(``docs/design.md`` §2).

At step n of a demonstration ``(s*_0, a*_0, s*_1, a*_1, ...)`` each estimator says how strongly the policy prefers
the target action ``a*_n``:

* :func:`teacher_forced`: SFT's ``pi(a*_n | s*_n)``, as if the policy had surely reached ``s*_n``;
* :func:`on_policy_exact`: the probability that the policy's *own* rollout is at ``s*_n`` at time n and takes
  ``a*_n`` there, computed exactly;
* :func:`ift_estimate`: IFT's ``pi(a*_n | lambda-mixed input)``, the input built by
  :meth:`iftgym.rules.ift.IFT.mixed_inputs`;
* :func:`monte_carlo`: the same on-policy probability counted in the policy's own rollouts, with a binomial
  confidence interval.

:func:`estimator_bias` compares any of them with the exact one, per step and summed, in probability and log space.
The identity it makes testable: on deterministic transitions

    ``log teacher_forced_n - log on_policy_exact_n = sum_{i<n} -log pi(a*_i | s*_i)``  (:func:`prefix_losses`),

so SFT's log-estimate is optimistic by exactly the accumulated loss of the prefix.

**What "the rollout is at s*_n at time n" means** (the ``reach`` argument):

* ``"path"``: the rollout has followed the demonstration so far (``s_i = s*_i`` for i <= n, ``a_i = a*_i`` for
  i < n), probability ``prod_{i<n} pi(a*_i | s*_i) P(s*_{i+1} | s*_i, a*_i)``. On deterministic transitions this
  is the design document's ``T(s*_n)``; it is also what a token MDP means, where a state is its whole prefix.
* ``"state"``: the rollout is in the state ``s*_n`` at time n by any route: the world's exact
  :meth:`~iftgym.world.World.reach_probs` (on Frozen Lake the forward state distribution of a Markov policy). It is
  at least the ``"path"`` value, and equal to it when the demonstration's prefix is the only way to be in ``s*_n``
  after n moves (as on the paper map's optimal route, and always for tokens, whose state is the whole prefix).
* ``"auto"`` (default): ``"path"`` when the world is deterministic, ``"state"`` otherwise (slippery ice).

**Inputs and shapes.** ``policy`` is a :class:`~iftgym.policies.base.Policy` with K seeds, or a policy matrix
``(S, A)`` / ``(K, S, A)`` (see :func:`as_policy`). ``demos`` is one :class:`~iftgym.types.Trajectory` (results
``(K, T)``), a sequence of trajectories or a :class:`~iftgym.types.StepBatch` (results ``(K, B, T)``). Results are
float64 numpy arrays, NaN on padding steps. Everything is computed in float64 from the policy's logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from scipy import special

from iftgym.policies.base import Policy
from iftgym.policies.tabular import TabularPolicy
from iftgym.rules.ift import IFT, IFTConfig
from iftgym.types import StepBatch, Trajectory
from iftgym.validate import at_least, between, one_of
from iftgym.world import World, seed_generators

REACHES = ("auto", "path", "state")
INTERVALS = ("clopper-pearson", "hoeffding")
CHUNK_EPISODES = 8192  # Monte Carlo episodes sampled at once (bounds the memory of the event tensors)
TINY = 1e-300  # stands in for probability 0 in a policy matrix's logits (0 * log 0 would give NaN)

PolicyLike = Policy | np.ndarray
Demos = Trajectory | Sequence[Trajectory] | StepBatch


# -- inputs ---------------------------------------------------------------------------------------------------
def as_policy(policy: PolicyLike) -> Policy:
    """A :class:`Policy` unchanged; a policy matrix ``(S, A)`` or ``(K, S, A)`` as a float64
    :class:`TabularPolicy` with exactly those action probabilities (its logits are the log-probabilities)."""
    if isinstance(policy, Policy):
        return policy
    matrix = np.asarray(policy, dtype=float)
    if matrix.ndim == 2:
        matrix = matrix[None]
    if matrix.ndim != 3:
        raise ValueError(f"policy matrix has shape {matrix.shape}: expected (S, A) or (K, S, A)")
    if (matrix < 0).any() or not np.allclose(matrix.sum(-1), 1.0, atol=1e-6):
        raise ValueError("policy matrix rows must be probability distributions (non-negative, summing to 1)")
    tabular = TabularPolicy(matrix.shape[1], matrix.shape[2], seeds=matrix.shape[0]).double()
    with torch.no_grad():
        tabular.logits.copy_(torch.from_numpy(np.log(np.maximum(matrix, TINY))))
    return tabular


def as_batch(world: World, demos: Demos) -> tuple[StepBatch, bool]:
    """The demonstrations as a batch, and whether they were a single trajectory (results then drop the B axis)."""
    if isinstance(demos, StepBatch):
        return demos, False
    if isinstance(demos, Trajectory):
        return StepBatch.from_trajectories(world, [demos]), True
    return StepBatch.from_trajectories(world, list(demos)), False


def resolve_reach(world: World, reach: str) -> str:
    """``"path"`` or ``"state"``: ``reach`` itself, or what ``"auto"`` means for ``world`` (see the module doc)."""
    one_of("reach", reach, REACHES)
    if reach != "auto":
        return reach
    return "path" if world.deterministic else "state"


def policy_matrix(policy: PolicyLike) -> np.ndarray:
    """``(K, n_ids, A)`` float64 action probabilities of a Markov policy at every input id."""
    return as_policy(policy).action_probs(torch.float64).cpu().numpy()


def _prepare(policy: PolicyLike, world: World, demos: Demos) -> tuple[Policy, StepBatch, bool]:
    policy = as_policy(policy)
    batch, single = as_batch(world, demos)
    return policy, batch.to(policy.device), single


def _finish(values: torch.Tensor, batch: StepBatch, single: bool) -> np.ndarray:
    """``(K, B, T)`` values as float64 numpy, NaN on padding, without the B axis for a single trajectory."""
    mask = batch.mask.expand(values.shape).cpu().numpy()
    out = np.where(mask, values.detach().double().cpu().numpy(), np.nan)
    return out[:, 0] if single else out


def _target_logps(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T)`` float64 ``log pi(a*_n | s*_n)``, 0 on padding."""
    with torch.no_grad():
        return batch.logps(policy.logits_at(batch.ids), torch.float64)


# -- the estimators -------------------------------------------------------------------------------------------
def teacher_forced(policy: PolicyLike, world: World, demos: Demos) -> np.ndarray:
    """SFT's estimate ``pi(a*_n | s*_n)`` at every step: ``(K, T)`` for one trajectory, else ``(K, B, T)``."""
    policy, batch, single = _prepare(policy, world, demos)
    return _finish(_target_logps(policy, batch).exp(), batch, single)


def prefix_losses(policy: PolicyLike, world: World, demos: Demos) -> np.ndarray:
    """The accumulated teacher-forced loss of each step's prefix, ``sum_{i<n} -log pi(a*_i | s*_i)`` (0 at n=0)."""
    policy, batch, single = _prepare(policy, world, demos)
    losses = -_target_logps(policy, batch)
    return _finish(losses.cumsum(-1) - losses, batch, single)


def _log_reach(policy: Policy, world: World, batch: StepBatch, reach: str, logps: torch.Tensor) -> torch.Tensor:
    """``(K, B, T)`` log-probability that the policy's rollout is at ``s*_n`` at time n (see ``reach``)."""
    if reach == "path":
        ids, actions = batch.ids, batch.actions
        moved = world.successor_probs(ids[..., :-1], actions[..., :-1]).gather(-1, ids[..., 1:, None])[..., 0]
        followed = logps[..., :-1] + moved.double().log()  # log of taking a*_i and landing on s*_{i+1}
        return torch.cat([torch.zeros_like(logps[..., :1]), followed], dim=-1).cumsum(-1)
    return world.reach_probs(policy, batch).to(logps.device, torch.float64).log()


def on_policy_exact(policy: PolicyLike, world: World, demos: Demos, reach: str = "auto") -> np.ndarray:
    """The exact probability that the policy's own rollout is at ``s*_n`` at time n and takes ``a*_n``.

    ``reach="path"`` gives ``T(s*_n) * pi(a*_n | s*_n)`` on deterministic transitions (products along the
    demonstration); ``"state"`` uses the forward state distribution; ``"auto"`` picks by the world's dynamics.
    """
    policy, batch, single = _prepare(policy, world, demos)
    logps = _target_logps(policy, batch)
    return _finish((_log_reach(policy, world, batch, resolve_reach(world, reach), logps) + logps).exp(), batch, single)


def ift_estimate(
    policy: PolicyLike, world: World, demos: Demos, lam: float = 0.2, prediction: str = "greedy", seed: int = 0
) -> np.ndarray:
    """IFT's estimate ``pi(a*_n | (1 - lam) E(s*_n) + lam E'(where the policy's prediction at n-1 leads))``.

    The mixed input is :meth:`IFT.mixed_inputs`'s; ``prediction`` is ``"greedy"`` or ``"sample"`` (then seed k draws
    from its generator of :func:`~iftgym.world.seed_generators` with ``seed``). ``lam = 0`` gives the
    teacher-forced estimate.
    """
    policy, batch, single = _prepare(policy, world, demos)
    rule = IFT(IFTConfig(lam=lam, prediction=prediction))
    rule.setup(policy, world, seed_generators(seed, policy.seeds))
    with torch.no_grad():
        logits = policy(rule.mixed_inputs(policy, batch, lam))
    return _finish(batch.logps(logits, torch.float64).exp(), batch, single)


# -- Monte Carlo ----------------------------------------------------------------------------------------------
def binomial_interval(
    successes: np.ndarray, n: int, alpha: float = 0.05, method: str = "clopper-pearson"
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided ``1 - alpha`` confidence interval of a binomial proportion, element-wise.

    ``"clopper-pearson"`` is the exact interval (it inverts the binomial tails, so its coverage is at least
    ``1 - alpha`` for every true p); ``"hoeffding"`` is ``k/n +- sqrt(log(2/alpha) / (2n))``, also valid for every
    p but wider, most of all near 0 and 1.
    """
    one_of("method", method, INTERVALS)
    _check_alpha(alpha)
    k = np.asarray(successes, dtype=float)
    if method == "hoeffding":
        half = math.sqrt(math.log(2 / alpha) / (2 * n))
        return np.clip(k / n - half, 0, 1), np.clip(k / n + half, 0, 1)
    # the Beta quantiles that invert the binomial tails (scipy.special: no scipy.stats import at start-up)
    with np.errstate(invalid="ignore"):
        lower = np.where(k <= 0, 0.0, special.betaincinv(np.maximum(k, 1e-300), n - k + 1, alpha / 2))
        upper = np.where(k >= n, 1.0, special.betaincinv(k + 1, np.maximum(n - k, 1e-300), 1 - alpha / 2))
    return np.where(np.isnan(k), np.nan, lower), np.where(np.isnan(k), np.nan, upper)


def _check_alpha(alpha: float) -> None:
    between("alpha", alpha, 0, 1, include_low=False, include_high=False)


@dataclass(frozen=True)
class MonteCarloEstimate:
    """On-policy event counts from ``n_episodes`` rollouts per seed: ``successes`` is ``(K, [B,] T)``, NaN on
    padding. ``mean`` estimates :func:`on_policy_exact`; ``lower``/``upper`` bound it at level ``1 - alpha``."""

    successes: np.ndarray
    n_episodes: int
    reach: str
    alpha: float = 0.05
    interval: str = "clopper-pearson"

    @property
    def mean(self) -> np.ndarray:
        return self.successes / self.n_episodes

    def bounds(self, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Element-wise two-sided interval at level ``1 - alpha`` (default: this estimate's ``alpha``)."""
        return binomial_interval(self.successes, self.n_episodes, self.alpha if alpha is None else alpha, self.interval)

    @property
    def lower(self) -> np.ndarray:
        return self.bounds()[0]

    @property
    def upper(self) -> np.ndarray:
        return self.bounds()[1]

    def excludes(self, values: np.ndarray, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Where ``values`` lie below, and where above, the level ``1 - alpha`` interval (element-wise booleans).

        For Clopper-Pearson this evaluates the binomial tails at ``values`` (``v < lower`` exactly when
        ``P_v(X >= k) < alpha/2``), so no interval end is searched for.
        """
        alpha = self.alpha if alpha is None else alpha
        _check_alpha(alpha)
        values = np.broadcast_to(np.asarray(values, dtype=float), self.successes.shape)
        valid = ~np.isnan(self.successes) & ~np.isnan(values)
        if self.interval == "hoeffding":
            lower, upper = self.bounds(alpha)
            return valid & (values < lower), valid & (values > upper)
        n, k = self.n_episodes, np.where(valid, self.successes, 0.0)
        v = np.clip(np.where(valid, values, 0.0), 0.0, 1.0)
        upper_tail = np.where(k <= 0, 1.0, special.bdtrc(np.maximum(k - 1, 0), n, v))  # P_v(X >= k)
        lower_tail = np.where(k >= n, 1.0, special.bdtr(np.minimum(k, n), n, v))  # P_v(X <= k)
        return valid & (upper_tail < alpha / 2), valid & (lower_tail < alpha / 2)


def _env_episodes(
    policy: Policy, world: World, env: Callable[[], gym.Env], n_episodes: int, seed: int, steps: int
) -> StepBatch:
    """``(K, n, steps)`` episodes of a Markov policy played one by one in Gymnasium envs made by ``env()``, whose
    observations are the world's states."""
    matrices = policy_matrix(policy)
    rng = np.random.default_rng(seed)
    shape = (matrices.shape[0], n_episodes, steps)
    ids, actions, alive = np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, bool)
    for k, matrix in enumerate(matrices):
        env_k = env()
        for e in range(n_episodes):
            state, _ = env_k.reset(seed=int(rng.integers(2**31)) if e == 0 else None)
            for t in range(steps):
                input_id = world.input_id(state)
                action = int(rng.choice(world.n_actions, p=matrix[input_id]))
                ids[k, e, t], actions[k, e, t], alive[k, e, t] = input_id, action, True
                state, _, terminated, truncated, _ = env_k.step(action)
                if terminated or truncated:
                    break
        env_k.close()
    return StepBatch(*(torch.from_numpy(x) for x in (ids, actions, alive, np.zeros(shape, np.float32))))


def _count_events(episodes: StepBatch, batch: StepBatch, reach: str) -> torch.Tensor:
    """``(K, B, T)``: in how many episodes the policy is at ``s*_n`` at time n (per ``reach``) and takes ``a*_n``."""
    steps = batch.ids.shape[-1]
    ids, actions, alive = episodes.ids[..., :steps], episodes.actions[..., :steps], episodes.mask[..., :steps]
    pad = steps - ids.shape[-1]  # every episode ended before the demonstration did
    ids, actions = (torch.nn.functional.pad(x, (0, pad), value=-1) for x in (ids, actions))
    alive = torch.nn.functional.pad(alive, (0, pad), value=False)
    n_seeds = ids.shape[0]
    demo_ids = batch.ids.expand(n_seeds, *batch.ids.shape[-2:]).to(ids.device)[:, None]  # (K, 1, B, T)
    demo_actions = batch.actions.expand(n_seeds, *batch.actions.shape[-2:]).to(ids.device)[:, None]
    hit = (ids[:, :, None] == demo_ids) & (actions[:, :, None] == demo_actions) & alive[:, :, None]  # (K, N, B, T)
    if reach == "path":  # on the demonstration at every step so far
        hit = hit.to(torch.uint8).cummin(-1).values.bool()
    return hit.sum(1)


def monte_carlo(
    policy: PolicyLike,
    world: World,
    demos: Demos,
    n_episodes: int = 10_000,
    seed: int = 0,
    reach: str = "auto",
    alpha: float = 0.05,
    interval: str = "clopper-pearson",
    env: Callable[[], gym.Env] | None = None,
) -> MonteCarloEstimate:
    """Count, in ``n_episodes`` rollouts of each seed's own policy, how often it is at ``s*_n`` at time n and takes
    ``a*_n``; an unbiased estimate of :func:`on_policy_exact` with a binomial confidence interval.

    By default all seeds are sampled at once with the world's vectorised ``sample`` (seed k from its generator of
    :func:`~iftgym.world.seed_generators` with ``seed``). With ``env``, a function returning a Gymnasium env whose
    observations are the world's states (``lambda: gymnasium.make("iftgym/FrozenLake-v0", map=...)``), episodes
    are played there one by one instead (slow: for checking an env against its model). ``interval`` is
    ``"clopper-pearson"`` (exact) or ``"hoeffding"``.
    """
    one_of("interval", interval, INTERVALS)
    if env is not None and not callable(env):
        raise ValueError(f"env={env!r} is not supported: expected None or a function returning a Gymnasium env")
    _check_alpha(alpha)
    at_least("n_episodes", n_episodes, 1)
    policy, batch, single = _prepare(policy, world, demos)
    reach = resolve_reach(world, reach)
    steps = batch.ids.shape[-1]
    if env is not None:
        counts = _count_events(_env_episodes(policy, world, env, n_episodes, seed, steps), batch, reach)
    else:
        generators = seed_generators(seed, policy.seeds)
        sizes = [min(CHUNK_EPISODES, n_episodes - start) for start in range(0, n_episodes, CHUNK_EPISODES)]
        counts = sum(_count_events(world.sample(policy, n, generators, max_steps=steps), batch, reach) for n in sizes)
    return MonteCarloEstimate(_finish(counts, batch, single), n_episodes, reach, alpha, interval)


# -- bias -----------------------------------------------------------------------------------------------------
def _point(values: np.ndarray | MonteCarloEstimate) -> np.ndarray:
    return values.mean if isinstance(values, MonteCarloEstimate) else np.asarray(values, dtype=float)


@dataclass(frozen=True)
class Bias:
    """Estimate minus reference at every step, in probability space (``prob``) and log space (``log``)."""

    prob: np.ndarray
    log: np.ndarray

    @property
    def prob_sum(self) -> np.ndarray:
        """Summed over the steps (the last axis), padding ignored."""
        return np.nansum(self.prob, axis=-1)

    @property
    def log_sum(self) -> np.ndarray:
        """Summed over the steps (the last axis), padding ignored."""
        return np.nansum(self.log, axis=-1)


def estimator_bias(estimate: np.ndarray | MonteCarloEstimate, reference: np.ndarray | MonteCarloEstimate) -> Bias:
    """The bias of ``estimate`` against ``reference`` (usually :func:`on_policy_exact`), per step and summed."""
    estimate, reference = _point(estimate), _point(reference)
    with np.errstate(divide="ignore", invalid="ignore"):
        return Bias(estimate - reference, np.log(estimate) - np.log(reference))


@dataclass(frozen=True)
class PreferenceEstimates:
    """Every exact estimator along the same demonstrations, ``(K, [B,] T)`` each."""

    teacher_forced: np.ndarray
    ift: np.ndarray
    exact: np.ndarray
    prefix_loss: np.ndarray
    reach: str
    lam: float

    @property
    def sft_bias(self) -> Bias:
        return estimator_bias(self.teacher_forced, self.exact)

    @property
    def ift_bias(self) -> Bias:
        return estimator_bias(self.ift, self.exact)


def preference_estimates(
    policy: PolicyLike, world: World, demos: Demos, lam: float = 0.2, reach: str = "auto"
) -> PreferenceEstimates:
    """Teacher-forced, IFT (greedy prediction, mixing ``lam``) and exact on-policy estimates, and prefix losses."""
    policy, reach = as_policy(policy), resolve_reach(world, reach)
    return PreferenceEstimates(
        teacher_forced(policy, world, demos),
        ift_estimate(policy, world, demos, lam),
        on_policy_exact(policy, world, demos, reach),
        prefix_losses(policy, world, demos),
        reach,
        lam,
    )


def demonstration_log_bias(world: World, policies: PolicyLike, demo: Demos, reach: str = "auto") -> np.ndarray:
    """SFT's summed log-optimism along ``demo``, one number per seed ``(K,)`` (``(K, B)`` for several demos):
    ``sum_n [log teacher_forced_n - log on_policy_exact_n]``, which on deterministic maps is
    ``sum_n sum_{i<n} -log pi(a*_i | s*_i)``. 0 for a policy that surely follows the demonstration; lower is
    better. ``policies`` is a Policy or policy matrices ``(K, S, A)``.
    """
    return estimator_bias(teacher_forced(policies, world, demo), on_policy_exact(policies, world, demo, reach)).log_sum
