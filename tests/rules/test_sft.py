"""SFT's loss against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym.policies import TabularPolicy
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


def test_sft_loss_is_per_sequence_mean_then_batch_mean() -> None:
    # pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
    policy = tabular([[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]])
    # Sequence A: three steps; sequence B: two steps and a padding step that must not count.
    data = batch([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [1, 1, 0]], [[True, True, True], [True, True, False]])
    seq_a = (math.log(4) + math.log(3) + math.log(2)) / 3
    seq_b = (math.log(3) + math.log(4 / 3)) / 2
    loss, metrics = make_rule("sft").loss(policy, data, 0)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx((seq_a + seq_b) / 2, rel=1e-6)
    assert metrics["loss"].item() == pytest.approx((seq_a + seq_b) / 2, rel=1e-6)
    token_mean = (math.log(4) + math.log(3) + math.log(2) + math.log(3) + math.log(4 / 3)) / 5
    assert abs(loss.item() - token_mean) > 1e-2  # not a mean over all tokens
