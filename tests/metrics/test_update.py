"""Update fields: the first-order prediction against the measured step, the per-source split, the aggregates and
the update map's artists."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP
from iftgym.loop import Snapshot, TrainConfig, train
from iftgym.metrics.decompose import decomposed_scores
from iftgym.metrics.update import (
    FieldSummary,
    UpdateRecorder,
    alignment,
    mse_change_shares,
    training_points,
    update_field,
    update_numbers,
)
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


@pytest.mark.parametrize("kind", ["tabular", "mlp"])
def test_what_moved_a_cell_splits_its_change_into_shares_that_sum_to_one(paper, kind):
    field = update_field("sft", make(kind, paper.n_states), paper, lr=1e-2)
    for cell in (0, 1, 12):
        moved = field.moved_by(cell)
        np.testing.assert_allclose(moved.parts.sum(0) + moved.rest, moved.total, rtol=0, atol=1e-15)
        np.testing.assert_allclose(moved.total, field.predicted[:, cell].mean(0))
        if moved.total.any():  # (a cell nothing moves has no shares)
            assert moved.shares.sum() + moved.rest_share == pytest.approx(1.0, abs=1e-12)
        own = np.flatnonzero(field.sources == cell)
        expected = moved.parts[own[0]] @ moved.total / (moved.total @ moved.total) if len(own) else 0.0
        assert moved.own_share() == pytest.approx(expected, nan_ok=True)
    # cell 0 is demonstrated: on the tabular policy all its change is its own loss's, on the MLP part is carried
    own_share = field.moved_by(0).own_share()
    assert own_share == pytest.approx(1.0) if kind == "tabular" else 0 < own_share < 1
    # cell 1 is not: on the tabular policy nothing moves it (no share), on the MLP every share is carried
    if kind == "tabular":
        assert np.isnan(field.moved_by(1).shares).all() and field.moved_by(1).own_share() == 0
    else:
        assert field.moved_by(1).own_share() == 0 and np.isfinite(field.moved_by(1).shares).all()
    with pytest.raises(IndexError, match="0 <= state < 36"):
        field.moved_by(36)


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


# -- numbers -------------------------------------------------------------------------------------------------------
def test_the_mse_change_on_untrained_cells_splits_by_source_and_matches_the_metric(paper):
    policy = make("mlp", paper.n_states, seeds=(0, 1, 2))
    field = update_field("ift", policy, paper, lr=1e-6, optimizer="sgd")
    change = mse_change_shares(field, paper)
    np.testing.assert_allclose(change.by_source.sum(1) + change.rest, change.change, rtol=1e-12)
    assert change.shares.sum() == pytest.approx(1.0, abs=1e-8) and change.demonstrated.all()
    np.testing.assert_allclose(change.measured, change.change, rtol=1e-4)  # first order as lr -> 0
    # the measured change is the change of mse_rest as compare scores it
    demos = paper.training_data().demos
    before = decomposed_scores(paper, np.exp(field.logps), demos)["mse_rest"]
    after = decomposed_scores(paper, np.exp(field.logps + field.measured), demos)["mse_rest"]
    np.testing.assert_allclose(change.measured, after - before, rtol=1e-9)
    tabular = make("tabular", paper.n_states)
    sft = mse_change_shares(update_field("sft", tabular, paper), paper)
    assert (sft.change == 0).all() and np.isnan(sft.shares).all()  # SFT cannot move a cell it does not train on
    assert (mse_change_shares(update_field("ift", tabular, paper), paper).change != 0).any()
    with pytest.raises(ValueError, match="memory"):
        mse_change_shares(update_field("sft", make("gru", paper.n_states), paper), paper)
    with pytest.raises(ValueError, match="every cell"):
        mse_change_shares(update_field("sft", policy, paper, states=torch.tensor([[0], [1]])), paper)


def test_alignment_is_the_cosine_between_two_fields(paper):
    policy = make("mlp", paper.n_states)
    sft, ift = (update_field(rule, policy, paper, lr=1e-3, optimizer="sgd") for rule in ("sft", "ift"))
    np.testing.assert_allclose(alignment(sft, sft), 1.0)
    np.testing.assert_allclose(alignment(sft, dataclasses.replace(sft, predicted=-3 * sft.predicted)), -1.0)
    cos = alignment(sft, ift)
    assert cos.shape == (2,) and (np.abs(cos) < 1).all()
    by_hand = [np.dot(a.ravel(), b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b)
               for a, b in zip(sft.predicted, ift.predicted)]  # fmt: skip
    np.testing.assert_allclose(cos, by_hand)
    zero = dataclasses.replace(sft, predicted=np.zeros_like(sft.predicted))
    assert np.isnan(alignment(sft, zero)).all()
    with pytest.raises(ValueError, match="same seeds"):
        alignment(sft, update_field("sft", make("mlp", paper.n_states, seeds=(3, 4)), paper))
    numbers = update_numbers({"sft": sft, "ift": ift}, paper)
    json.dumps(numbers, allow_nan=False)
    assert set(numbers["mse"]) == {"sft", "ift"} and numbers["mse"]["sft"]["demonstrated"] == [0, 6, 12, 18, 19, 20]
    alive = float(alignment(sft, ift, ~paper.terminal).mean())  # "all": every non-terminal cell
    assert numbers["alignment"]["sft | ift"]["all"] == pytest.approx(alive, rel=1e-12)


def test_a_tiny_gpt_field_on_tokens_by_reverse_mode(world, tiny):
    """TinyGPT's fused attention has no forward-mode derivative on the CPU: the prediction falls back to reverse
    mode and still matches the measured step; its learned token table cannot name loss terms by input id."""
    policy = tiny(world).double()
    states = world.training_data().demos.ids[:3, :5]  # three prompts' first five tokens
    field = update_field("sft", policy, world, lr=1e-5, optimizer="sgd", states=states, split=False)
    assert field.predicted.shape == (2, 3, world.n_actions) and field.sources.size == 0
    assert slope(field) == pytest.approx(1.0, abs=1e-3) and relative_error(field) < 1e-3
    with pytest.raises(ValueError, match="one-hot"):
        update_field("sft", policy, world)


# -- over training: the loop's snapshot hook and the recorder -----------------------------------------------------
def test_training_points_are_start_middle_and_end():
    assert training_points(300) == (0, 150, 300) and training_points(4) == (0, 2, 4) and training_points(1) == (0, 1)


def test_the_snapshot_hook_sees_the_live_optimizer_and_the_rule_of_the_active_stage(paper):
    seen = []

    def hook(snapshot: Snapshot) -> None:
        states = [s["step"] for s in snapshot.optimizer.state.values()]
        seen.append((snapshot.step, snapshot.stage, snapshot.stage_step, snapshot.rule.name,
                     int(states[0]) if states else 0, snapshot.policy is policy))  # fmt: skip

    policy = MLPPolicy(paper.n_states, 4, hidden=16, seeds=[0, 1])
    train(policy, "sft+dpo", paper, config=TrainConfig(steps=4), snapshot=hook)
    # before every step and after the last; at the boundary the starting stage (fresh optimiser), at the end the last
    assert seen == [(0, 0, 0, "sft", 0, True), (1, 0, 1, "sft", 1, True), (2, 1, 0, "dpo", 0, True),
                    (3, 1, 1, "dpo", 1, True), (4, 1, 2, "dpo", 2, True)]  # fmt: skip
    with pytest.raises(TypeError, match="snapshot"):
        train(policy, "sft", paper, snapshot="hook")


def test_a_recorded_field_is_the_step_training_takes_next_and_leaves_training_unchanged(paper):
    """The recorder's measured change at a point is the change the run's next optimiser step makes (the live Adam
    state, the whole data), and recording at every step changes nothing in the run, sampling rules included."""
    data = paper.training_data()
    logps = {}

    def both(snapshot: Snapshot) -> None:
        logps[snapshot.step] = torch.log(snapshot.policy.action_probs(torch.float64)).numpy()
        recorder(snapshot)

    recorder = UpdateRecorder(paper, data, range(7))
    first = MLPPolicy(paper.n_states, 4, hidden=16, seeds=[0, 1])
    second = MLPPolicy(paper.n_states, 4, hidden=16, seeds=[0, 1])
    config = TrainConfig(steps=6, lr=0.1)  # PPO's episodes reach the goal after three SFT steps at this rate
    with_maps = train(first, "sft+ppo", paper, data, config, snapshot=both)
    without = train(second, "sft+ppo", paper, data, config)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert all(np.array_equal(with_maps.history[k], without.history[k]) for k in without.history)
    assert (without.history["episode_return"] > 0).any() and (np.diff(without.history["entropy"], axis=0) != 0).all()
    result = recorder.result()
    assert [p["step"] for p in result["points"]] == list(range(7)) and result["seconds"] > 0
    assert [p["rule"] for p in result["points"]] == ["sft"] * 3 + ["ppo"] * 4
    for step in (0, 2, 4):
        measured = np.array(result["points"][step]["field"]["measured"])
        np.testing.assert_allclose(measured, (logps[step + 1] - logps[step]).mean(0), rtol=0, atol=2e-6)
    sft = result["points"][2]["mse"]
    assert sft["rest_share"] > 0.1  # in the middle of a stage, Adam's momentum makes much of the step
    total = sum(s for s in sft["shares"].values()) + sft["rest_share"]
    assert total == pytest.approx(1.0, abs=1e-6)
    assert sft["own_share"] + sft["carried_share"] + sft["rest_share"] == pytest.approx(1.0, abs=1e-6)
    assert set(sft["shares"]) == {str(c) for c in sft["demonstrated"]} == {"0", "6", "12", "18", "19", "20"}
    # at step 0, the field of a fresh optimiser on the untrained network: update_field's own default
    fresh = update_field("sft", MLPPolicy(paper.n_states, 4, hidden=16, seeds=[0, 1]), paper, data, lr=config.lr)
    np.testing.assert_allclose(result["points"][0]["field"]["predicted"], fresh.predicted.mean(0), rtol=1e-9)
    assert recorder.changes[0].shape == (2, paper.n_states, 4)


def test_a_recorder_skips_a_policy_with_memory_and_says_why(paper):
    recorder = UpdateRecorder(paper, paper.training_data(), (0, 1))
    train(GRUPolicy(paper.n_states, 4, hidden=8, seeds=[0, 1]), "sft", paper, config=TrainConfig(steps=1),
          snapshot=recorder)  # fmt: skip
    assert recorder.result() == {"skipped": recorder.skipped, "seconds": recorder.seconds}
    assert "memory" in recorder.skipped
    assert recorder.seconds > 0  # the time it spent finding out is kept: compare leaves it out of the wall time


def test_own_and_carried_split_the_mse_change(paper):
    field = update_field("dpo", make("mlp", paper.n_states), paper, lr=1e-3)
    change = mse_change_shares(field, paper)
    np.testing.assert_allclose(change.own + change.carried + change.rest, change.change, rtol=1e-9, atol=1e-15)
    assert (change.own != 0).any()  # DPO's rejected route runs through untrained cells: their own terms move them
    sft = mse_change_shares(update_field("sft", make("mlp", paper.n_states), paper, lr=1e-3), paper)
    assert (sft.own == 0).all() and sft.as_json()["carried_share"] == pytest.approx(1.0, abs=1e-9)
    tabular = update_field("sft", make("tabular", paper.n_states), paper)
    summary = tabular.summary()
    assert summary.own_fraction(~paper.terminal) == 1.0 and (summary.carried_part == 0).all()
    back = FieldSummary.from_json(json.loads(json.dumps(summary.as_json())), "sft")
    np.testing.assert_array_equal(back.values(), summary.values()) and np.testing.assert_array_equal(
        back.carried(), tabular.carried().mean(0)[None])  # fmt: skip
