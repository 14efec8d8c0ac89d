"""Update strips of the token world: the first-order prediction against the measured step, the per-position loss
weights against hand computation, the strips' top tokens and the snapshot hook."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from iftgym.loop import Stage, TrainConfig, train
from iftgym.metrics.update_tokens import TokenStrip, TokenUpdateRecorder, token_update
from iftgym.policies.registry import build_policy
from iftgym.rules.ift import propagation_weights
from iftgym.rules.registry import make_rule
from iftgym.types import TrainingData
from iftgym.world import seed_generators
from iftgym.worlds.registry import make_world


@pytest.fixture(scope="module")
def world():
    """Two-digit addition, 8 training prompts; the per-token reward gives GRPO's groups different rewards."""
    return make_world("tokens", task="addition", task_args={"digits": 1}, n_train=8, n_test=2, reward="token")


def tiny_gpt(world, seeds=(0, 1)):
    """A float64 TinyGPT (so a step of 1e-6 is measured well above rounding)."""
    return build_policy("tiny-gpt", world.n_ids, world.n_actions, list(seeds), block_size=world.block_size,
                        n_layer=1, n_head=2, n_embd=16).double()  # fmt: skip


def relative_error(update) -> float:
    return float(np.abs(update.measured - update.predicted).max() / np.abs(update.predicted).max())


RULES = ("sft", "dft", "ift", "grpo(n_episodes=16, num_generations=8)")


@pytest.mark.parametrize("rule", RULES)
def test_prediction_matches_the_measured_change_as_lr_goes_to_zero(world, rule):
    policy = tiny_gpt(world)
    start = [p.detach().clone() for p in policy.parameters()]
    errors = []
    for lr in (1e-4, 1e-6):
        update = token_update(rule, policy, world, lr=lr)
        assert update.measured.shape == update.predicted.shape == (2, 3, world.n_ids)  # 2 digits and <eos>
        assert np.abs(update.predicted).max() > 0.01 * lr  # the step moves something
        errors.append(relative_error(update))
    assert errors[1] < 1e-3 and errors[1] < errors[0] / 30  # the error is second order: O(lr)
    agreement = update.agreement()
    assert agreement["slope"] == pytest.approx(1.0, abs=1e-4) and agreement["cosine"] == pytest.approx(1.0, abs=1e-8)
    assert all(torch.equal(a, b) for a, b in zip(start, policy.parameters()))  # the policy is left untouched


def shown_logps(policy, world, example) -> torch.Tensor:
    """``(K, n)``: log pi of the example's target tokens at its answer positions, teacher-forced."""
    batch = world.step_batch([(example.prompt, example.completion)])
    with torch.no_grad():
        logps = batch.logps(policy.logits_at(batch.ids), torch.float64)
    return logps[:, 0, batch.mask[0]]


@pytest.mark.parametrize("average", ["sequence", "token"])
def test_sfts_weight_is_one_over_its_averages_count(world, average):
    policy = tiny_gpt(world)
    update = token_update(f"sft(average={average})", policy, world)
    answers = world.training_data().demos.mask.sum(-1).tolist()  # every answer's tokens, <eos> included
    expected = 1 / (len(answers) * answers[0]) if average == "sequence" else 1 / sum(answers)
    np.testing.assert_allclose(update.weights, expected, rtol=1e-6)  # the rules take log pi in float32


def test_a_confident_positions_weight_survives_float32(world):
    """Where the target's probability is 1 to float32's precision, the target's own logit gradient c (1 - p) is
    mostly rounding there: the weight comes from the other tokens' entries."""
    policy = build_policy("tiny-gpt", world.n_ids, world.n_actions, [0], block_size=world.block_size, n_layer=1,
                          n_head=2, n_embd=16)  # fmt: skip
    example = world.task.train[0]
    data = TrainingData(demos=world.step_batch([(example.prompt, example.completion)]))
    train(policy, [Stage(make_rule("sft"), 200, 0.05)], world, data, TrainConfig(steps=200, lr=0.05, batch_size=1))
    with torch.no_grad():  # sharper: the trained targets' margins times four
        policy.head.weight.mul_(4)
        policy.head.bias.mul_(4)
    batch = data.demos
    with torch.no_grad():
        probs = torch.softmax(policy.logits_at(batch.ids), -1)[0, 0][batch.mask[0]]
    p_target = probs.gather(-1, batch.actions[0][batch.mask[0]][:, None])[:, 0]
    assert (1 - p_target).min() < 1e-6  # float32 keeps under 7 digits of 1 - p there: c (1 - p) is mostly rounding
    update = token_update("sft", policy, world, [example], data)
    np.testing.assert_allclose(update.weights, 1 / batch.mask.sum().item(), rtol=1e-3)


def test_dfts_weight_is_the_targets_probability_over_the_count(world):
    policy = tiny_gpt(world)
    update = token_update("dft", policy, world)
    demos = world.training_data().demos
    probability = shown_logps(policy, world, world.task.train[0]).exp().numpy()
    np.testing.assert_allclose(update.weights, probability / (demos.size * demos.lengths[0].item()), rtol=1e-6)


@pytest.mark.parametrize("detach", [True, False])
def test_ifts_weight_is_its_propagation_weight_and_what_flows_through_it(world, detach):
    """With the weights detached, IFT's weight is its propagation weight over the count; without, autograd of IFT's
    loss written out by hand with respect to the log-probabilities gives the same derivative."""
    policy = tiny_gpt(world)
    rule = make_rule("ift", detach_weights=detach)
    update = token_update(rule, policy, world)
    demos = world.training_data().demos
    set_up = copy.deepcopy(rule)
    set_up.setup(policy, world, seed_generators(0, policy.seeds, 0))
    with torch.no_grad():
        logps = demos.logps(policy(set_up.mixed_inputs(policy, demos, set_up.config.lam)), torch.float64)
    logps.requires_grad_(True)
    c = set_up.config
    weights = propagation_weights(logps.detach() if detach else logps, demos.mask, c.gamma, c.kind, c.side, c.norm)
    loss = ((-logps * weights).sum(-1) / demos.lengths).mean(-1)
    (grad,) = torch.autograd.grad(loss.sum(), logps)
    expected = -grad[:, 0, demos.mask[0]].numpy()
    np.testing.assert_allclose(update.weights, expected, rtol=1e-6)
    if detach:
        np.testing.assert_allclose(update.weights, weights[:, 0, demos.mask[0]].detach() / (demos.size * 3),
                                   rtol=1e-6)  # fmt: skip


def test_grpos_weight_is_the_advantage_of_the_answers_that_took_the_target(world):
    """GRPO (dapo) weighs each sampled token by its answer's advantage over the batch's token count: at a shown
    position, the sum over the sampled answers that share its prefix and take its target there."""
    one = make_world("tokens", task="addition", task_args={"digits": 1}, n_train=1, n_test=1, reward="token")
    policy = tiny_gpt(one)
    rule = make_rule("grpo(n_episodes=32, num_generations=16)")
    update = token_update(rule, policy, one)
    set_up = copy.deepcopy(rule)
    set_up.setup(policy, one, seed_generators(0, policy.seeds, 0))
    set_up.collect(policy, 0)
    samples = set_up.current_samples()
    (example,) = one.task.train
    target = one.step_batch([(example.prompt, example.completion)])
    start = int(target.mask[0].nonzero()[0])
    answer = target.actions[0, target.mask[0]]
    expected = np.zeros((2, len(answer)))
    for k in range(2):
        tokens = samples.batch.mask[k].sum()
        for i in range(samples.batch.size):
            taken = samples.batch.actions[k, i, start : start + len(answer)]
            agree = (taken == answer[: len(taken)]).int().cumprod(0)  # the sample follows the target this far
            expected[k, : int(agree.sum())] += float(samples.advantages[k, i] / tokens)
    assert np.abs(expected).max() > 0  # some sampled answers took the target's first token
    np.testing.assert_allclose(update.weights, expected, rtol=1e-6, atol=1e-12)


def test_the_strips_top_tokens_are_the_largest_changes_and_read_back(world):
    policy = tiny_gpt(world)
    update = token_update("sft", policy, world, examples=world.task.train[:2], lr=1e-3)
    strips = update.strips(world.action_name, top=2)
    assert [s.prompt for s in strips] == list(update.prompts) and len(strips) == 2
    change = update.predicted.mean(0)
    first = strips[0]
    assert first.tokens == tuple(world.action_name(int(v)) for v in update.targets[:3])
    for row, up, down in zip(change[:3], first.reinforced, first.suppressed):
        assert [c for _, c in up] == pytest.approx(sorted(row[row > 0], reverse=True)[:2])
        assert [c for _, c in down] == pytest.approx(sorted(row[row < 0])[:2])
        assert up[0][0] == world.action_name(int(row.argmax()))
    np.testing.assert_allclose(first.predicted, update.target_values()[:, :3].mean(0))
    np.testing.assert_allclose(first.probability, np.exp(update.logps[:, np.arange(3), update.targets[:3]]).mean(0))
    back = TokenStrip.from_json(first.as_json(), first.rule)
    assert back.reinforced == first.reinforced and back.tokens == first.tokens
    np.testing.assert_array_equal(back.weights_per_seed, first.weights_per_seed)


def test_the_recorder_takes_the_training_points_and_leaves_training_unchanged(world):
    data = world.training_data()
    runs = []
    for hooked in (False, True):
        policy = tiny_gpt(world)
        recorder = TokenUpdateRecorder(world, data, world.task.train[:1], points=(0, 2))
        train(policy, [Stage(make_rule("sft"), 2)], world, data, TrainConfig(lr=1e-2, eval_every=0),
              snapshot=recorder if hooked else None)  # fmt: skip
        runs.append([p.detach().clone() for p in policy.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    result = recorder.result()
    assert [p["step"] for p in result["points"]] == [0, 2] and result["seconds"] > 0
    point = result["points"][1]
    assert point["rule"] == "sft" and point["stage"] == 1 and point["stage_step"] == 2
    assert point["agreement"]["cosine"] > 0.9
    (strip,) = point["strips"]
    assert strip["tokens"] == [world.action_name(int(v)) for v in world.answer_ids(world.task.train[0].completion)]


def test_a_world_without_tokens_is_refused(paper):
    with pytest.raises(ValueError, match="need a token world"):
        token_update("sft", build_policy("mlp", paper.n_states, 4, [0]), paper)
