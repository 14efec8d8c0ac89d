"""SFT's loss against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym.rules import make_rule
from iftgym.types import StepBatch


def test_sft_loss_is_per_sequence_mean_then_batch_mean(tabular, step_batch) -> None:
    # pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
    policy = tabular([[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]])
    # Sequence A: three steps; sequence B: two steps and a padding step that must not count.
    data = step_batch([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [1, 1, 0]], [[True, True, True], [True, True, False]])
    seq_a = (math.log(4) + math.log(3) + math.log(2)) / 3
    seq_b = (math.log(3) + math.log(4 / 3)) / 2
    loss, metrics = make_rule("sft").loss(policy, data, 0)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx((seq_a + seq_b) / 2, rel=1e-6)
    assert metrics["loss"].item() == pytest.approx((seq_a + seq_b) / 2, rel=1e-6)
    token_mean = (math.log(4) + math.log(3) + math.log(2) + math.log(3) + math.log(4 / 3)) / 5
    assert abs(loss.item() - token_mean) > 1e-2  # not a mean over all tokens


def test_sft_with_a_frozen_embedding_is_ift_s_control(reverse, tiny) -> None:
    from iftgym.rules.ift import IFT, IFTConfig
    from iftgym.world import seed_generators

    policy = tiny(reverse)
    batch = reverse.training_data().demos
    frozen = make_rule('sft(embedding="frozen")')
    frozen.setup(policy, reverse, seed_generators(0, policy.seeds))
    loss, _ = frozen.loss(policy, batch, 0)
    torch.testing.assert_close(loss, make_rule("sft").loss(policy, batch, 0)[0])  # same value before any step
    loss.sum().backward()
    assert policy.wte.grad is None or policy.wte.grad.abs().max() == 0  # the input embedding gets no gradient
    # ... exactly as IFT with lambda = 0 and gamma = 0 in its reference form (every input from the frozen copy)
    ift = IFT(IFTConfig(lam=0.0, gamma=0.0))
    ift.setup(policy, reverse, seed_generators(0, policy.seeds))
    torch.testing.assert_close(ift.loss(policy, batch, 0)[0], loss.detach())
    with torch.no_grad():
        policy.wte.add_(0.5)  # an optimiser step: the copy follows only when re-synced
    before = frozen.frozen_table.clone()
    frozen.after_step(policy)
    assert not torch.equal(before, frozen.frozen_table) and torch.equal(frozen.frozen_table, policy.wte.detach())


def test_sft_with_a_frozen_embedding_is_plain_sft_on_one_hot_inputs(paper) -> None:
    from iftgym.loop import TrainConfig, train
    from iftgym.policies import MLPPolicy

    data = StepBatch.from_trajectories(paper, [paper.optimal_demonstration()])
    runs = [train(MLPPolicy(paper.n_states, 4, seeds=2), rule, paper, data, TrainConfig(steps=10))
            for rule in ("sft", 'sft(embedding="frozen")')]  # fmt: skip
    torch.testing.assert_close(runs[0].policy.action_probs(), runs[1].policy.action_probs(), rtol=0, atol=1e-6)
