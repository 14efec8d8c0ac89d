"""Unit-testing estimator bias: assert that an estimator is unbiased, over- or under-estimating, at a stated
false-failure probability.

An *estimator* is any callable ``estimator(policy, world, demos)`` returning per-step estimates of the on-policy
probability of the demonstration's actions, ``(K, [B,] T)`` like the functions of
:mod:`iftgym.metrics.estimators` (``teacher_forced``, ``ift_estimate``, ``on_policy_exact``), or a
:class:`~iftgym.metrics.estimators.MonteCarloEstimate` when it is itself a Monte Carlo count. It is compared with
a *reference*: the exact on-policy value (default), a seeded Monte Carlo estimate (where no exact value exists, or
to test the exact value itself), or another estimator.

**The statistics.** When one side is a Monte Carlo count, each compared step gets a two-sided binomial interval
(Clopper-Pearson by default, Hoeffding on request) at level ``1 - alpha / m``, m the number of compared steps
(Bonferroni), so all m intervals hold at once with probability at least ``1 - alpha``. A step is *significantly
over* when the estimate lies above the interval, *under* when below. Then

* ``"unbiased"`` passes when no step is significantly over or under: if the estimator is unbiased, the check fails
  with probability at most ``alpha``;
* ``"over"`` passes when no step is significantly under and at least one is significantly over; it fails with
  probability at most ``alpha`` when the estimate is at or above the truth everywhere and, at some step, above it by
  more than that step's interval width (a smaller bias may go undetected: the message then says so; raise
  ``n_episodes``);
* ``"under"`` is the mirror image.

Everything is seeded (``seed``), so a passing test keeps passing. Against an exact reference nothing is random: a
step is over or under when it differs by more than round-off (``rtol``, ``atol``), and a correct claim never fails.

Use it in pytest like ``assert``; the failure message names each offending step with its estimate, reference and
interval::

    from iftgym import FrozenLakeMDP, TabularPolicy, assert_estimator_bias
    from iftgym.metrics.estimators import on_policy_exact, teacher_forced


    def test_sft_is_optimistic():
        world = FrozenLakeMDP.from_map("paper")
        policy = TabularPolicy(world.n_states, 4, seeds=3, init_std=1.0)
        assert_estimator_bias(teacher_forced, policy, world, world.optimal_demonstration(), "over")


    def test_exact_matches_rollouts_on_slippery_ice():
        world = FrozenLakeMDP.from_map("4x4", slippery=True)
        policy = TabularPolicy(world.n_states, 4, seeds=2, init_std=1.0)
        demo = world.optimal_demonstration()
        assert_estimator_bias(on_policy_exact, policy, world, demo, "unbiased",
                              reference="monte-carlo", n_episodes=20_000, alpha=0.01, seed=0)
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec

import numpy as np

from iftgym.metrics.estimators import (
    INTERVALS,
    Demos,
    MonteCarloEstimate,
    PolicyLike,
    as_batch,
    as_policy,
    binomial_interval,
    monte_carlo,
    on_policy_exact,
    resolve_reach,
)
from iftgym.validate import between, one_of
from iftgym.world import World

EXPECTATIONS = ("unbiased", "over", "under")
REFERENCES = ("exact", "monte-carlo")
SHOWN = 5  # offending steps listed in a failure message

Estimator = Callable[[PolicyLike, World, Demos], "np.ndarray | MonteCarloEstimate"]
P = ParamSpec("P")


def _name(fn: Callable) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", repr(fn))


@dataclasses.dataclass(frozen=True)
class BiasCheck:
    """The outcome of :func:`check_estimator_bias`, arrays ``(K, B, T)``.

    ``direction`` is +1 where the estimate is significantly above the reference, -1 where below, 0 elsewhere
    (and on padding). ``monte_carlo`` is the random side, if any (``random_side`` says which: ``"estimate"``,
    ``"reference"`` or ``"none"``), and ``cell_alpha`` the level of each step's interval (``alpha / cells``; 0 when
    both sides are exact). ``message`` explains a failure.
    """

    passed: bool
    expected: str
    estimate: np.ndarray
    reference: np.ndarray
    direction: np.ndarray
    cells: int
    alpha: float
    cell_alpha: float
    monte_carlo: MonteCarloEstimate | None
    random_side: str
    message: str

    def interval(self) -> tuple[np.ndarray, np.ndarray]:
        """Each step's interval for the random side (the point values themselves when nothing is random)."""
        if self.monte_carlo is None:
            return self.reference, self.reference
        lower, upper = self.monte_carlo.bounds(self.cell_alpha)
        return (lower[:, None], upper[:, None]) if lower.ndim == 2 else (lower, upper)


def check_estimator_bias(
    estimator: Estimator,
    policy: PolicyLike,
    world: World,
    demos: Demos,
    expected: str = "unbiased",
    *,
    reference: str | Estimator = "exact",
    reach: str = "auto",
    alpha: float = 0.05,
    n_episodes: int = 20_000,
    seed: int = 0,
    interval: str = "clopper-pearson",
    rtol: float = 1e-6,
    atol: float = 1e-12,
) -> BiasCheck:
    """Compare ``estimator(policy, world, demos)`` with ``reference`` at every step: is it ``expected``
    (``"unbiased"``, ``"over"`` or ``"under"``-estimating)? Returns a :class:`BiasCheck` and never raises on a failed
    check (:func:`assert_estimator_bias` does).

    Args:
        estimator: ``(policy, world, demos) -> (K, [B,] T)`` estimates, or a ``MonteCarloEstimate``.
        policy, world, demos: as in :mod:`iftgym.metrics.estimators` (a Policy or policy matrices; one trajectory
            or many).
        expected: the claim checked, see the module doc for exactly when each passes.
        reference: ``"exact"`` (:func:`~iftgym.metrics.estimators.on_policy_exact`), ``"monte-carlo"``
            (:func:`~iftgym.metrics.estimators.monte_carlo` with ``n_episodes`` and ``seed``) or another estimator.
        reach: what being at ``s*_n`` means (``"auto"``, ``"path"``, ``"state"``) for the built-in references;
            the estimator is called as given, so pass it the same reach, e.g.
            ``functools.partial(on_policy_exact, reach="path")``.
        alpha: the false-failure probability, shared by all steps (Bonferroni).
        n_episodes, seed: the Monte Carlo reference's rollouts per seed and its random seed.
        interval: ``"clopper-pearson"`` (exact binomial) or ``"hoeffding"``.
        rtol, atol: round-off allowed when nothing is random (float32 estimators need about 1e-6).
    """
    one_of("expected", expected, EXPECTATIONS)
    if not callable(reference) and reference not in REFERENCES:
        raise ValueError(
            f"reference={reference!r} is not supported: expected one of {', '.join(map(repr, REFERENCES))} "
            "or an estimator callable"
        )
    one_of("interval", interval, INTERVALS)
    between("alpha", alpha, 0, 1, include_low=False, include_high=False)
    policy, reach = as_policy(policy), resolve_reach(world, reach)
    estimate = estimator(policy, world, demos)
    if callable(reference):
        ref, ref_name = reference(policy, world, demos), _name(reference)
    elif reference == "exact":
        ref, ref_name = on_policy_exact(policy, world, demos, reach), f"exact on-policy (reach={reach!r})"
    else:
        ref = monte_carlo(policy, world, demos, n_episodes, seed, reach, alpha, interval)
        ref_name = f"Monte Carlo on-policy (reach={reach!r}, {n_episodes} episodes per seed, seed={seed})"
    random = [x for x in (estimate, ref) if isinstance(x, MonteCarloEstimate)]
    if len(random) == 2:
        raise ValueError("estimator and reference are both Monte Carlo estimates: at most one side may be random")
    est_point, ref_point = (np.asarray(x.mean if isinstance(x, MonteCarloEstimate) else x, dtype=float)
                            for x in (estimate, ref))  # fmt: skip
    if est_point.shape != ref_point.shape:
        raise ValueError(f"estimator returned shape {est_point.shape}, the reference has {ref_point.shape}")
    single = est_point.ndim == 2
    est3, ref3 = (x[:, None] if single else x for x in (est_point, ref_point))
    valid = ~np.isnan(est3) & ~np.isnan(ref3)
    cells = int(valid.sum())
    if cells == 0:
        raise ValueError("nothing to compare: every step is padding or NaN")

    mc = random[0] if random else None
    cell_alpha = alpha / cells if mc is not None else 0.0
    if mc is None:
        tol = atol + rtol * np.abs(ref3)
        above, below = valid & (est3 > ref3 + tol), valid & (est3 < ref3 - tol)
    elif mc is ref:
        below, above = (x[:, None] if single else x for x in mc.excludes(est_point, cell_alpha))
    else:  # the estimator is the random side: it is above the reference where the reference is below its interval
        above, below = (x[:, None] if single else x for x in mc.excludes(ref_point, cell_alpha))
    direction = above.astype(np.int8) - below.astype(np.int8)
    wrong = {"unbiased": direction != 0, "over": direction < 0, "under": direction > 0}[expected]
    detected = {"unbiased": True, "over": above.any(), "under": below.any()}[expected]
    passed = not wrong.any() and bool(detected)
    random_side = "none" if mc is None else ("reference" if mc is ref else "estimate")
    check = BiasCheck(passed, expected, est3, ref3, direction, cells, alpha, cell_alpha, mc, random_side, "")
    if passed:
        return check
    names = (_name(estimator), ref_name)
    message = _message(check, names, policy, world, demos, wrong, (rtol, atol))
    return dataclasses.replace(check, message=message)


def _signature_of(source: Callable[P, BiasCheck]) -> Callable[[Callable[..., BiasCheck]], Callable[P, BiasCheck]]:
    """Give the decorated function ``source``'s parameters: for type checkers (``P``) and for ``help()``."""

    def decorate(function: Callable[..., BiasCheck]) -> Callable[P, BiasCheck]:
        function.__signature__ = inspect.signature(source)  # type: ignore[attr-defined]
        return function

    return decorate


@_signature_of(check_estimator_bias)
def assert_estimator_bias(*args, **kwargs) -> BiasCheck:
    """Assert that ``estimator(policy, world, demos)`` is ``expected`` (``"unbiased"``, ``"over"`` or
    ``"under"``-estimating) against ``reference``; raise ``AssertionError`` naming the offending steps otherwise.

    Takes the arguments of :func:`check_estimator_bias`; returns its :class:`BiasCheck` when the claim holds.
    """
    check = check_estimator_bias(*args, **kwargs)
    if not check.passed:
        raise AssertionError(check.message)
    return check


def _message(
    check: BiasCheck,
    names: tuple[str, str],
    policy: PolicyLike,
    world: World,
    demos: Demos,
    wrong: np.ndarray,
    tolerance: tuple[float, float],
) -> str:
    """A failure message: the claim, why it failed, the offending steps (worst first) and the statistics used."""
    label = {"unbiased": "unbiased", "over": "over-estimating", "under": "under-estimating"}[check.expected]
    gap = np.nan_to_num(check.estimate - check.reference)
    if wrong.any():
        verbs = {1: "significantly above", -1: "significantly below"}
        counts = ", ".join(
            f"{int((wrong & (check.direction == d)).sum())} {verb}"
            for d, verb in verbs.items()
            if (wrong & (check.direction == d)).any()
        )
        reason = f"{int(wrong.sum())} of {check.cells} steps contradict it ({counts} the reference)"
        cells = np.argwhere(wrong)
        cells = cells[np.argsort(-np.abs(gap[tuple(cells.T)]), kind="stable")]
    else:
        side = "above" if check.expected == "over" else "below"
        reason = f"no step is significantly {side} the reference (the bias is absent, or smaller than the interval)"
        cells = np.argwhere(~np.isnan(check.estimate) & ~np.isnan(check.reference))
        closest = -gap[tuple(cells.T)] if check.expected == "over" else gap[tuple(cells.T)]
        cells = cells[np.argsort(closest, kind="stable")]
    batch, _ = as_batch(world, demos)
    ids = batch.ids.expand(check.estimate.shape).cpu().numpy()
    actions = batch.actions.expand(check.estimate.shape).cpu().numpy()
    seeds = as_policy(policy).seeds
    lines = [f"{names[0]} is not {label} against {names[1]}: {reason}"]
    for k, b, t in cells[:SHOWN]:
        action = int(actions[k, b, t])
        where = f"seed {seeds[k]}" + (f", demo {b}" if check.estimate.shape[1] > 1 else "") + f", step {t}"
        what = f"state {ids[k, b, t]}, action {world.action_name(action)}"
        text = {"estimate": f"{check.estimate[k, b, t]:.6g}", "reference": f"{check.reference[k, b, t]:.6g}"}
        if check.monte_carlo is not None:
            mc = check.monte_carlo
            successes = mc.successes[:, None] if mc.successes.ndim == 2 else mc.successes
            low, high = binomial_interval(successes[k, b, t], mc.n_episodes, check.cell_alpha, mc.interval)
            text[check.random_side] += f" [interval {float(low):.6g}, {float(high):.6g}]"
        lines.append(f"  {where} ({what}): " + ", ".join(f"{key} {value}" for key, value in text.items()))
    if wrong.any() and len(cells) > SHOWN:
        lines.append(f"  ... and {len(cells) - SHOWN} more")
    if check.monte_carlo is None:
        lines.append(f"exact comparison: steps differ beyond round-off (rtol={tolerance[0]:g}, atol={tolerance[1]:g})")
    else:
        lines.append(
            f"alpha={check.alpha:g} shared by {check.cells} steps (Bonferroni: {check.cell_alpha:.3g} each), "
            f"{check.monte_carlo.interval} intervals from {check.monte_carlo.n_episodes} episodes per seed"
            + ("; raise n_episodes to detect a smaller bias" if not wrong.any() else "")
        )
    return "\n".join(lines)
