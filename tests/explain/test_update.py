"""Update fields: the first-order prediction against the measured step, the per-source split, the aggregates and
the update map's artists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP
from iftgym.explain.update import update_field
from iftgym.policies import GRUPolicy, MLPPolicy, TabularPolicy
from iftgym.rules.registry import make_rule
from iftgym.types import StepBatch
from iftgym.world import seed_generators

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


# -- the split by source cell --------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("rule", RULES)
def test_the_sources_sum_to_the_whole_prediction(paper, rule, optimizer):
    field = update_field(rule, make("mlp", paper.n_states), paper, lr=1e-2, optimizer=optimizer)
    scale = np.abs(field.predicted).max()
    np.testing.assert_allclose(field.contributions.sum(1) + field.rest, field.predicted, rtol=0, atol=1e-12 * scale)
    assert np.abs(field.rest).max() < 1e-9 * scale  # a fresh optimiser: the whole step is this step's gradient
    np.testing.assert_allclose(field.own() + field.carried(), field.contributions.sum(1), rtol=0, atol=1e-12 * scale)
    demonstrated = paper.training_data().demos.ids[0].tolist()
    expected = demonstrated if rule in ("sft", "ift") else sorted(set(range(paper.n_states)) - {7, 8, 9, 10, 13, 14,
                                                                                   15, 16, 21, 22, 24, 25, 26, 28, 30,
                                                                                   31, 32})  # fmt: skip
    assert field.sources.tolist() == sorted(expected)


def test_a_sources_term_is_the_gradient_of_its_own_loss_terms(paper):
    """SFT's loss is the mean of its step losses: the cell c term of the split is the step alone, over the length."""
    policy = make("mlp", paper.n_states)
    field = update_field("sft", policy, paper, lr=1e-3, optimizer="sgd")
    demos = paper.training_data().demos
    for i, cell in enumerate(field.sources):
        alone = StepBatch(demos.ids, demos.actions, demos.mask & (demos.ids == cell), demos.rewards)
        single = update_field("sft", policy, paper, alone, lr=1e-3, optimizer="sgd")
        assert single.sources.tolist() == [cell]
        expected = single.predicted / int(demos.lengths[0])
        np.testing.assert_allclose(field.contributions[:, i], expected, rtol=0, atol=1e-6 * np.abs(expected).max())
        assert np.abs(field.carried()).max() > 0  # the MLP carries every term to other cells


@pytest.mark.parametrize("rule", ["sft", "dpo", "orpo"])
def test_the_tabular_policy_is_exactly_local(paper, rule):
    field = update_field(rule, make("tabular", paper.n_states), paper, lr=1e-2)
    trained = np.isin(np.arange(paper.n_states), field.sources)
    assert (field.measured[:, ~trained] == 0).all() and (field.predicted[:, ~trained] == 0).all()
    assert np.abs(field.measured[:, trained]).min(-1).max() > 0
    for i, source in enumerate(field.sources):
        others = np.arange(paper.n_states) != source
        assert (field.contributions[:, i][:, others] == 0).all()  # a term moves its own cell only
    assert (field.carried() == 0).all()
    np.testing.assert_allclose(field.own(), field.predicted, rtol=0, atol=1e-15)


def test_ift_reaches_the_successors_of_wrong_predictions_even_on_the_tabular_policy(paper):
    """IFT mixes where the model's own prediction leads into a step's input: that cell's logits are read too."""
    policy = make("tabular", paper.n_states)
    demos = paper.training_data().demos
    assert (update_field("ift(lam=0)", policy, paper, lr=1e-2).carried() == 0).all()
    field = update_field("ift", policy, paper, lr=1e-2)
    ids = demos.ids[0].numpy()
    predicted = policy.action_probs(torch.float64)[:, ids].argmax(-1).numpy()  # (K, T)
    untrained = set()
    for k in range(policy.n_seeds):
        successors = [paper.step(int(s), int(a), 0.0) for s, a in zip(ids[:-1], predicted[k, :-1])]
        wrong = {int(u) for u, truth in zip(successors, ids[1:]) if u != truth}
        assert wrong  # the untrained seeds mispredict somewhere
        assert set(np.flatnonzero(np.abs(field.carried()[k]).max(-1) > 0).tolist()) == wrong
        untrained |= wrong - set(ids.tolist())
    assert (field.measured[:, sorted(untrained)] != 0).any()  # cells no demonstration acts in move under IFT


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)])
def test_a_step_in_the_middle_of_training_keeps_the_optimisers_state(paper, optimizer):
    policy = make("mlp", paper.n_states)
    rule = make_rule("sft")
    rule.setup(policy, paper, seed_generators(0, policy.seeds, 0))
    demos = paper.training_data().demos
    opt = optimizer(list(policy.parameters()))
    for step in range(3):
        opt.zero_grad()
        rule.loss(policy, demos, step)[0].sum().backward()
        opt.step()
    state = {k: v.clone() for k, v in opt.state[policy.w1].items()}
    field = update_field(rule, policy, paper, optimizer=opt, lr=1e-6, step=3)
    assert field.lr == 1e-6 and all(torch.equal(v, opt.state[policy.w1][k]) for k, v in state.items())
    assert slope(field) == pytest.approx(1.0, abs=1e-4)
    scale = np.abs(field.predicted).max()
    assert np.abs(field.rest).max() > 0.1 * scale  # the momentum of the earlier steps
    np.testing.assert_allclose(field.contributions.sum(1) + field.rest, field.predicted, rtol=0, atol=1e-12 * scale)
