"""DFT: the weighted token losses on hand-made logits, their gradient, seed independence and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym import FrozenLakeMDP, TrainConfig, train
from iftgym.policies import MLPPolicy, TabularPolicy
from iftgym.rules import make_rule
from iftgym.types import StepBatch


def tabular(rows: list[list[float]]) -> TabularPolicy:
    """A one-seed tabular policy with the given logits (one row per input id)."""
    policy = TabularPolicy(len(rows), len(rows[0]))
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([rows]))
    return policy


def batch(ids: list[list[int]], actions: list[list[int]], mask: list[list[bool]]) -> StepBatch:
    ids_t = torch.tensor(ids)
    return StepBatch(ids_t, torch.tensor(actions), torch.tensor(mask), torch.zeros(ids_t.shape))


# pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
# Sequence A: three steps (p = 1/4, 1/3, 1/2); sequence B: two steps (p = 1/3, 3/4) and a padding step.
DATA = ([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [1, 1, 0]], [[True, True, True], [True, True, False]])
PROBS_A, PROBS_B = [1 / 4, 1 / 3, 1 / 2], [1 / 3, 3 / 4]


def weighted(probs: list[float]) -> list[float]:
    return [-p * math.log(p) for p in probs]


def test_dft_loss_is_the_probability_weighted_nll_per_sequence_then_batch() -> None:
    policy, data = tabular(ROWS), batch(*DATA)
    loss, metrics = make_rule("dft").loss(policy, data, 0)
    expected = (sum(weighted(PROBS_A)) / 3 + sum(weighted(PROBS_B)) / 2) / 2
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["loss"].item() == pytest.approx(expected, rel=1e-6)
    nll = (sum(-math.log(p) for p in PROBS_A) / 3 + sum(-math.log(p) for p in PROBS_B) / 2) / 2
    assert metrics["nll"].item() == pytest.approx(nll, rel=1e-6)  # what SFT's loss would be


def test_dft_token_average_is_trl_s() -> None:
    policy, data = tabular(ROWS), batch(*DATA)
    loss, metrics = make_rule('dft(average="token")').loss(policy, data, 0)
    expected = sum(weighted(PROBS_A) + weighted(PROBS_B)) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["nll"].item() == pytest.approx(sum(-math.log(p) for p in PROBS_A + PROBS_B) / 5, rel=1e-6)
    assert abs(loss.item() - make_rule("dft").loss(policy, data, 0)[0].item()) > 1e-3


def test_dft_gradient_is_minus_the_gradient_of_p() -> None:
    """The weight gets no gradient: a token's gradient is ``-sg(p) grad log p = -grad p``, i.e. on the logits of its
    state ``-p (onehot(a) - pi)``; SFT's is that divided by ``p``."""
    policy = tabular(ROWS)
    data = batch([[0]], [[1]], [[True]])  # one token: action 1 at input 0, p = 3/4
    loss, _ = make_rule("dft").loss(policy, data, 0)
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    pi = torch.tensor([1 / 4, 3 / 4])
    expected = -(3 / 4) * (torch.tensor([0.0, 1.0]) - pi)
    torch.testing.assert_close(grad[0, 0], expected)
    assert grad[0, 1:].abs().max() == 0
    sft_loss, _ = make_rule("sft").loss(policy, data, 0)
    (sft_grad,) = torch.autograd.grad(sft_loss.sum(), [policy.logits])
    torch.testing.assert_close(grad, sft_grad * 3 / 4)


def test_a_seed_trains_the_same_alone_and_beside_other_seeds() -> None:
    world = FrozenLakeMDP.from_map("4x4")
    config = TrainConfig(steps=20, lr=1e-2, batch_size=1, seed=1)
    data = world.training_data(n_demos=3)
    alone = MLPPolicy(world.n_states, 4, hidden=16, seeds=[7])
    together = MLPPolicy(world.n_states, 4, hidden=16, seeds=[3, 7, 9])
    train(alone, "dft", world, data, config)
    train(together, "dft", world, data, config)
    torch.testing.assert_close(alone.action_probs()[0], together.action_probs()[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("average", ["sequence", "token"])
def test_a_run_lowers_the_loss_and_raises_success_on_the_4x4_map(average: str) -> None:
    world = FrozenLakeMDP.from_map("4x4")
    policy = TabularPolicy(world.n_states, 4, seeds=2)
    before = world.scores(policy, ["success"])["success"]
    result = train(policy, f'dft(average="{average}")', world, config=TrainConfig(steps=100, lr=0.1))
    after = world.scores(policy, ["success"])["success"]
    losses = result.history["loss"]
    assert (losses[-1] < losses[0]).all()
    assert (after > before + 0.5).all() and (after > 0.9).all()
