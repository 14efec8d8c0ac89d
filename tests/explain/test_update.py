"""Update fields: the first-order prediction against the measured step, the per-source split, the aggregates and
the update map's artists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP
from iftgym.explain.update import update_field
from iftgym.policies import GRUPolicy, MLPPolicy, TabularPolicy

RULES = ("sft", "ift", "dpo", "orpo")


def make(kind: str, n_ids: int, seeds=(0, 1)) -> torch.nn.Module:
    """A float64 policy (so a step of 1e-6 is measured well above rounding)."""
    policies = {
        "tabular": lambda: TabularPolicy(n_ids, 4, seeds=list(seeds), init_std=0.5),
        "mlp": lambda: MLPPolicy(n_ids, 4, hidden=32, seeds=list(seeds)),
        "gru": lambda: GRUPolicy(n_ids, 4, hidden=16, seeds=list(seeds)),
    }
    return policies[kind]().double()


def relative_error(field) -> float:
    return float(np.abs(field.measured - field.predicted).max() / np.abs(field.predicted).max())


def slope(field) -> float:
    """The least-squares ratio measured / predicted over every seed, state and action."""
    return float((field.measured * field.predicted).sum() / (field.predicted**2).sum())


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
@pytest.mark.parametrize("rule", RULES)
def test_prediction_matches_the_measured_change_as_lr_goes_to_zero(paper, kind, rule):
    policy = make(kind, paper.n_states)
    start = [p.detach().clone() for p in policy.parameters()]
    errors = []
    for lr in (1e-3, 1e-5):
        field = update_field(rule, policy, paper, lr=lr)
        assert field.measured.shape == field.predicted.shape == (2, paper.n_states, 4)
        assert np.abs(field.predicted).max() > 0.1 * lr  # the step moves something
        errors.append(relative_error(field))
    assert errors[1] < 1e-3 and errors[1] < errors[0] / 30  # the error is second order: O(lr)
    assert slope(field) == pytest.approx(1.0, abs=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(start, policy.parameters()))  # the policy is left untouched


def test_sgd_moves_along_minus_lr_times_the_gradient_and_adam_about_lr_times_its_sign(paper):
    policy = make("tabular", paper.n_states)
    sgd = update_field("sft", policy, paper, lr=1e-6, optimizer="sgd")
    assert slope(sgd) == pytest.approx(1.0, abs=1e-5)
    # on the tabular policy z = theta, so log pi moves by J delta = delta - E_pi[delta] in every row
    demo = paper.training_data().demos
    policy.zero_grad()
    (-demo.logps(policy.logits_at(demo.ids), torch.float64).sum(-1) / demo.lengths).sum().backward()
    grad = policy.logits.grad.detach().numpy()  # (K, S, A)
    probs = torch.softmax(policy.logits.detach(), -1).numpy()
    expected = -1e-6 * (grad - (probs * grad).sum(-1, keepdims=True))
    np.testing.assert_allclose(sgd.predicted, expected, rtol=0, atol=1e-14)
    adam = update_field("sft", policy, paper, lr=1e-6, optimizer="adam")
    steps = -1e-6 * np.sign(grad)  # Adam's first step is lr sign(g) where |g| >> eps
    expected = steps - (probs * steps).sum(-1, keepdims=True)
    np.testing.assert_allclose(adam.predicted, expected, rtol=0, atol=1e-12)


def test_update_field_refuses_what_it_cannot_do(paper):
    policy = make("mlp", paper.n_states)
    with pytest.raises(ValueError, match="optimizer"):
        update_field("sft", policy, paper, optimizer="rmsprop")
    with pytest.raises(ValueError, match="states"):
        update_field("sft", policy, paper, states=torch.tensor([[99]]))
    with pytest.raises(ValueError, match="Adagrad is not supported"):
        update_field("sft", policy, paper, optimizer=torch.optim.Adagrad(policy.parameters()))


def test_4x4_map_fields_too():
    world = FrozenLakeMDP.from_map("4x4")
    field = update_field("dpo", make("mlp", world.n_states), world, lr=1e-6, optimizer="sgd")
    assert field.predicted.shape == (2, 16, 4) and slope(field) == pytest.approx(1.0, abs=1e-5)
