"""ORPO: the loss against a hand value, the rule on mean log-probabilities, stability near certainty, log1mexp."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from iftgym import FrozenLakeMDP, PairBatch
from iftgym.policies import MLPPolicy
from iftgym.rules import make_rule
from iftgym.rules.common import step_logps
from iftgym.rules.orpo import log1mexp, orpo_loss

LN2 = math.log(2)


def test_orpo_loss_hand_value() -> None:
    m_w, m_l, beta = -0.5, -2.0, 0.25
    log_odds = (m_w - m_l) - (math.log(1 - math.exp(m_w)) - math.log(1 - math.exp(m_l)))
    expected = -m_w - beta * math.log(1 / (1 + math.exp(-log_odds)))
    losses, odds = orpo_loss(torch.tensor([m_w], dtype=torch.float64), torch.tensor([m_l], dtype=torch.float64), beta)
    assert odds.item() == pytest.approx(log_odds, rel=1e-12)
    assert losses.item() == pytest.approx(expected, rel=1e-12)


def test_orpo_rule_matches_orpo_loss_on_mean_logps(paper: FrozenLakeMDP, pairs: PairBatch) -> None:
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    loss, metrics = make_rule("orpo", beta=0.4).loss(policy, pairs, 0)
    with torch.no_grad():
        m_w = step_logps(policy, pairs.chosen).sum(-1) / pairs.chosen.mask.sum(-1)
        m_l = step_logps(policy, pairs.rejected).sum(-1) / pairs.rejected.mask.sum(-1)
    torch.testing.assert_close(loss, orpo_loss(m_w, m_l, 0.4)[0].mean(-1))
    torch.testing.assert_close(metrics["nll_loss"], -m_w.mean(-1))


@pytest.mark.parametrize("value", [0.0, -1e-9])
def test_orpo_is_stable_near_certain_trajectories(value: float) -> None:
    m_w = torch.tensor([value], requires_grad=True)
    m_l = torch.tensor([value], requires_grad=True)
    losses, log_odds = orpo_loss(m_w, m_l, 0.25)
    losses.sum().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(log_odds).all()
    assert torch.isfinite(m_w.grad).all() and torch.isfinite(m_l.grad).all()
    assert losses.item() == pytest.approx(-value + 0.25 * LN2, abs=1e-6)  # equal sides: log_odds = 0


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-13), (torch.float32, 1e-6)])
def test_log1mexp_matches_high_precision_reference(dtype: torch.dtype, rtol: float) -> None:
    xs = [-1e-12, -1e-9, -1e-6, -1e-3, -0.1, -0.5, -0.69, -0.7, -1.0, -3.0, -10.0, -30.0, -80.0]
    x = torch.tensor(xs, dtype=dtype)
    got = log1mexp(x).double()
    mpmath.mp.dps = 50
    expected = torch.tensor(
        [float(mpmath.log(-mpmath.expm1(mpmath.mpf(float(v))))) for v in x.double()], dtype=torch.float64
    )
    torch.testing.assert_close(got, expected, rtol=rtol, atol=0.0)
