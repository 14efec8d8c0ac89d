"""The Markov policies' logits at every input id: read straight from the weights, they are the forward pass's numbers,
gradients and token counts; a forward hook sees every pass."""

from __future__ import annotations

import pytest
import torch

from iftgym.policies.mlp import MLPPolicy
from iftgym.policies.tabular import TabularPolicy


def _policies() -> list:
    return [MLPPolicy(9, 4, hidden=16, seeds=3), TabularPolicy(9, 4, seeds=3, init_std=1.0)]


def _through_forward(policy) -> torch.Tensor:
    return policy(policy.embedding_table().unsqueeze(1))[:, 0]


@pytest.mark.parametrize("index", [0, 1], ids=["mlp", "tabular"])
def test_direct_logits_are_the_forward_pass_s_numbers_gradients_and_counts(index: int) -> None:
    direct, forward = _policies()[index], _policies()[index]
    assert direct.direct_id_logits() is not None
    ids = torch.tensor([[0, 4, 8, 2]])
    weights = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    for logits in (direct.logits_at(ids), _through_forward(forward)[:, None][:, :, ids[0]]):
        (logits * weights).sum().backward()
    assert torch.equal(direct.logits_at(ids), forward.logits_at(ids))
    for (name, a), b in zip(direct.named_parameters(), forward.parameters()):
        assert torch.equal(a.grad, b.grad), name
    before = direct.token_passes
    with torch.no_grad():
        direct.id_logits()
    assert direct.token_passes - before == 9  # one pass over the 9 ids, as forward() counts it
    assert torch.equal(direct.action_probs(), torch.softmax(_through_forward(forward), -1))


def test_a_forward_hook_sees_the_pass_that_computes_the_logits() -> None:
    policy = MLPPolicy(9, 4, hidden=16, seeds=2)
    seen = []
    handle = policy.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    try:
        policy.logits_at(torch.tensor([[1, 2]]))
    finally:
        handle.remove()
    assert seen == [torch.Size([2, 1, 9, 4])]
    policy.logits_at(torch.tensor([[1, 2]]))
    assert len(seen) == 1  # without a hook, the weights are read directly
