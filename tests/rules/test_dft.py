"""DFT: the weighted token losses on hand-made logits, their gradient, seed independence and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym.rules import make_rule

# pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
# Sequence A: three steps (p = 1/4, 1/3, 1/2); sequence B: two steps (p = 1/3, 3/4) and a padding step.
DATA = ([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [1, 1, 0]], [[True, True, True], [True, True, False]])
PROBS_A, PROBS_B = [1 / 4, 1 / 3, 1 / 2], [1 / 3, 3 / 4]


def weighted(probs: list[float]) -> list[float]:
    return [-p * math.log(p) for p in probs]


def test_dft_loss_is_the_probability_weighted_nll_per_sequence_then_batch(tabular, step_batch) -> None:
    policy, data = tabular(ROWS), step_batch(*DATA)
    loss, metrics = make_rule("dft").loss(policy, data, 0)
    expected = (sum(weighted(PROBS_A)) / 3 + sum(weighted(PROBS_B)) / 2) / 2
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["loss"].item() == pytest.approx(expected, rel=1e-6)
    nll = (sum(-math.log(p) for p in PROBS_A) / 3 + sum(-math.log(p) for p in PROBS_B) / 2) / 2
    assert metrics["nll"].item() == pytest.approx(nll, rel=1e-6)  # what SFT's loss would be


def test_dft_token_average_is_trl_s(tabular, step_batch) -> None:
    policy, data = tabular(ROWS), step_batch(*DATA)
    loss, metrics = make_rule('dft(average="token")').loss(policy, data, 0)
    expected = sum(weighted(PROBS_A) + weighted(PROBS_B)) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["nll"].item() == pytest.approx(sum(-math.log(p) for p in PROBS_A + PROBS_B) / 5, rel=1e-6)
    assert abs(loss.item() - make_rule("dft").loss(policy, data, 0)[0].item()) > 1e-3


def test_dft_gradient_is_minus_the_gradient_of_p(tabular, step_batch) -> None:
    """The weight gets no gradient: a token's gradient is ``-sg(p) grad log p = -grad p``, i.e. on the logits of its
    state ``-p (onehot(a) - pi)``; SFT's is that divided by ``p``."""
    policy = tabular(ROWS)
    data = step_batch([[0]], [[1]], [[True]])  # one token: action 1 at input 0, p = 3/4
    loss, _ = make_rule("dft").loss(policy, data, 0)
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    pi = torch.tensor([1 / 4, 3 / 4])
    expected = -(3 / 4) * (torch.tensor([0.0, 1.0]) - pi)
    torch.testing.assert_close(grad[0, 0], expected)
    assert grad[0, 1:].abs().max() == 0
    sft_loss, _ = make_rule("sft").loss(policy, data, 0)
    (sft_grad,) = torch.autograd.grad(sft_loss.sum(), [policy.logits])
    torch.testing.assert_close(grad, sft_grad * 3 / 4)


def test_a_seed_trains_the_same_alone_and_beside_other_seeds(seed_independent) -> None:
    seed_independent("dft")


@pytest.mark.parametrize("average", ["sequence", "token"])
def test_a_run_lowers_the_loss_and_raises_success_on_the_4x4_map(average: str, learns_on_4x4) -> None:
    learns_on_4x4(f'dft(average="{average}")', lowers="loss", success_above=0.9)
