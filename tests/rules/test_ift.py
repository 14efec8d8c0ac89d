"""IFT: relation propagation against a reference implementation, the loss and its gradient, lambda schedules, and
the mixed inputs on Frozen Lake and on TinyGPT token batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP, StepBatch
from iftgym.loop import TrainConfig, train
from iftgym.policies import MLPPolicy
from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.rules import make_rule
from iftgym.rules.common import sft_loss_from_logps, step_logps
from iftgym.rules.ift import IFT, IFTConfig, propagation_weights
from iftgym.types import TrainingData
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld


# -- relation propagation -------------------------------------------------------------------------------------
def reference_weights(losses: list[float], mask: list[bool], gamma: float, kind: str, norm: str) -> list[float]:
    """docs/design.md §3, IFT step 4, side "left", written out with plain Python loops."""
    n = sum(mask)
    if gamma == 0:
        return [1.0 if m else 0.0 for m in mask]
    units = [
        (loss / n if kind == "loss" else loss if kind == "logps" else 1.0) if m else 0.0
        for loss, m in zip(losses, mask)
    ]
    T = len(units)
    G = [sum(gamma ** (j - t) * units[j] for j in range(t, T)) for t in range(T)]
    if norm == "L1":
        w = G
    elif norm == "L2":
        w = [g * g for g in G]
    elif norm == "log":
        w = [math.log(g + 1) for g in G]
    else:
        z = sum(math.exp(g) for g, m in zip(G, mask) if m)
        w = [math.exp(g) / z for g in G]
    w = [x if m else 0.0 for x, m in zip(w, mask)]
    total = sum(w)
    return [x * n / total for x in w]


def test_propagation_weights_worked_example() -> None:
    logps = -torch.tensor([[2.0, 1.0, 1.0, 0.5, 0.5]])
    weights = propagation_weights(logps, torch.ones(1, 5, dtype=torch.bool))
    torch.testing.assert_close(weights, torch.tensor([[2.147, 1.296, 0.882, 0.446, 0.229]]), atol=1e-3, rtol=0)


# Three sequences: a full one, a padded one, and one with masked "prompt" steps before the targets.
PROPAGATION_LOSSES = [[2.0, 1.0, 1.0, 0.5, 0.5, 0.25], [0.3, 1.7, 0.9, 9.0, 9.0, 9.0], [5.0, 5.0, 0.1, 2.5, 0.7, 1.2]]


PROPAGATION_MASK = [[True] * 6, [True] * 3 + [False] * 3, [False, False, True, True, True, True]]


@pytest.mark.parametrize("kind", ["loss", "logps", "mask"])
@pytest.mark.parametrize("norm", ["L1", "L2", "softmax", "log"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.95, 1.0])
def test_propagation_weights_match_reference(kind: str, norm: str, gamma: float) -> None:
    mask = torch.tensor(PROPAGATION_MASK)
    logps = -torch.tensor(PROPAGATION_LOSSES, dtype=torch.float64) * mask  # the rules pass 0 on masked steps
    weights = propagation_weights(logps, mask, gamma=gamma, kind=kind, side="left", norm=norm)
    expected = [reference_weights(*args, gamma, kind, norm) for args in zip(PROPAGATION_LOSSES, PROPAGATION_MASK)]
    torch.testing.assert_close(weights, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    # weights average 1 over each sequence's unmasked steps and vanish elsewhere
    torch.testing.assert_close(weights.sum(-1) / mask.sum(-1), torch.ones(3, dtype=torch.float64))
    assert (weights[~mask] == 0).all()
    if gamma == 0:
        torch.testing.assert_close(weights, mask.double())


def test_propagation_weights_batch_over_seeds() -> None:
    mask = torch.tensor(PROPAGATION_MASK)
    logps = -torch.tensor(PROPAGATION_LOSSES, dtype=torch.float64) * mask
    stacked = torch.stack([logps, 2 * logps])  # (K=2, B, T)
    weights = propagation_weights(stacked, mask)
    torch.testing.assert_close(weights[0], propagation_weights(logps, mask))
    torch.testing.assert_close(weights[1], propagation_weights(2 * logps, mask))


def test_right_side_propagation_is_the_reference_rule() -> None:
    # The worked example: kind loss, norm L1, gamma 0.95. By hand: G = discounted prefix sums of loss / n
    # = [.4, .58, .751, .81345, .8727775]; + the smallest non-zero G (.4); inverted; rescaled to sum to n = 5.
    logps = -torch.tensor([2.0, 1.0, 1.0, 0.5, 0.5], dtype=torch.float64)
    weights = propagation_weights(logps, torch.ones(5, dtype=torch.bool), 0.95, "loss", "right", "L1")
    torch.testing.assert_close(weights, torch.tensor([1.316, 1.074, 0.915, 0.868, 0.827], dtype=torch.float64),
                               atol=5e-4, rtol=0)  # fmt: skip
    # The smallest non-zero sum is taken over the whole batch: here the padded second sequence's first step, .1.
    losses = torch.tensor([[2.0, 1.0, 1.0, 0.5, 0.5], [0.2, 0.1, 0.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    weights = propagation_weights(-losses, mask, 0.95, "loss", "right", "L1")
    expected = [[1.4775, 1.0864, 0.8681, 0.8087, 0.7594], [1.1011, 0.8989, 0, 0, 0]]  # worked by hand, 4 digits
    torch.testing.assert_close(weights, torch.tensor(expected, dtype=torch.float64), atol=5e-5, rtol=0)
    # per seed: each seed's batch has its own minimum, so a seed's weights do not depend on the others
    stacked = propagation_weights(-torch.stack([losses, 3 * losses]), mask, 0.95, "loss", "right", "L1")
    torch.testing.assert_close(stacked[0], weights)
    # the other norms invert the same sums: 1/G^2, softmax(1/G), 1/log(G + 1)
    G = torch.tensor([0.4, 0.58, 0.751, 0.81345, 0.8727775], dtype=torch.float64) + 0.4
    for norm, raw in (("L2", 1 / G**2), ("softmax", torch.softmax(1 / G, -1)), ("log", 1 / torch.log(G + 1))):
        weights = propagation_weights(logps, torch.ones(5, dtype=torch.bool), 0.95, "loss", "right", norm)
        torch.testing.assert_close(weights, raw * 5 / raw.sum())


# -- the rule -------------------------------------------------------------------------------------------------
def ift_loss_by_hand(rule: IFT, policy, data: StepBatch, detach_weights: bool) -> torch.Tensor:
    """IFT's loss rebuilt from its documented steps, optionally with detached propagation weights."""
    c = rule.config
    logps = data.logps(policy(rule.mixed_inputs(policy, data, c.lam)))
    weights = propagation_weights(
        logps.detach() if detach_weights else logps, data.mask, c.gamma, c.kind, c.side, c.norm
    )
    return ((-logps * weights).sum(-1) / data.mask.sum(-1)).mean(-1)


def test_ift_gradient_flows_through_the_weights(paper: FrozenLakeMDP, generators, grads) -> None:
    data = StepBatch.from_trajectories(
        paper, [paper.optimal_demonstration(), paper.suboptimal_demonstration()]
    )  # two lengths: padding included
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    rule = IFT(IFTConfig(lam=0.3, gamma=0.9))
    rule.setup(policy, paper, generators(policy))
    loss, _ = rule.loss(policy, data, 0)
    torch.testing.assert_close(loss, ift_loss_by_hand(rule, policy, data, detach_weights=False))
    live = grads(policy, loss)
    for a, b in zip(live, grads(policy, ift_loss_by_hand(rule, policy, data, detach_weights=False))):
        torch.testing.assert_close(a, b)
    detached = grads(policy, ift_loss_by_hand(rule, policy, data, detach_weights=True))
    assert max((a - b).abs().max().item() for a, b in zip(live, detached)) > 1e-4
    # the detach_weights ablation is exactly the hand-built loss with detached weights
    ablation = IFT(IFTConfig(lam=0.3, gamma=0.9, detach_weights=True))
    ablation.setup(policy, paper, generators(policy))
    ablated, _ = ablation.loss(policy, data, 0)
    torch.testing.assert_close(ablated, loss)  # the same value...
    for a, b in zip(grads(policy, ablated), detached):  # ...and the detached gradient
        torch.testing.assert_close(a, b)


def test_ift_with_lambda_0_and_gamma_0_is_sft(paper: FrozenLakeMDP, generators, grads) -> None:
    data = StepBatch.from_trajectories(paper, [paper.optimal_demonstration(), paper.suboptimal_demonstration()])
    policy = MLPPolicy(paper.n_states, 4, seeds=3)
    sft_loss, _ = make_rule("sft").loss(policy, data, 0)
    ift = make_rule("ift", lam=0.0, gamma=0.0)
    ift.setup(policy, paper, generators(policy))
    ift_loss, _ = ift.loss(policy, data, 0)
    assert torch.equal(sft_loss, ift_loss)
    # Same gradients up to float32 summation order (SFT gathers from a per-id table, IFT runs every step).
    for a, b in zip(grads(policy, sft_loss), grads(policy, ift_loss)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # ... and so the same training run.
    demos = TrainingData(demos=data)
    runs = [
        train(MLPPolicy(paper.n_states, 4, seeds=2), rule, paper, demos, TrainConfig(steps=15))
        for rule in (make_rule("sft"), make_rule("ift", lam=0.0, gamma=0.0))
    ]
    np.testing.assert_allclose(runs[0].history["loss"], runs[1].history["loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(runs[0].policy.action_probs(), runs[1].policy.action_probs(), rtol=0, atol=1e-5)


def test_lambda_schedules(generator) -> None:
    assert IFTConfig(lam=0.3).lam_at(0, []) == IFTConfig(lam=0.3).lam_at(1000, []) == 0.3
    linear = IFTConfig(lam=0.8, lam_min=0.2, schedule="linear", warmup_steps=10)
    assert [linear.lam_at(s, []) for s in (0, 5, 10, 50)] == pytest.approx([0.2, 0.5, 0.8, 0.8])
    noisy = IFTConfig(lam=0.5, schedule="noisy", noise_std=0.3)
    draws = [noisy.lam_at(s, [generator(7)]).item() for s in range(3)]
    eps = torch.randn((), generator=generator(7)).item()
    assert draws == pytest.approx([0.5 * (1 + 0.3 * eps)] * 3)
    # each seed draws its own noise from its own generator
    per_seed = noisy.lam_at(0, [generator(7), generator(8)])
    assert per_seed.shape == (2,) and per_seed[0].item() == pytest.approx(draws[0]) and per_seed[0] != per_seed[1]
    wild = IFTConfig(lam=0.9, schedule="noisy", noise_std=5.0)
    gen = generator(3)
    values = [wild.lam_at(s, [gen]).item() for s in range(200)]
    assert min(values) == 0.0 and max(values) == 1.0 and all(0.0 <= v <= 1.0 for v in values)
    assert len(set(values)) > 10  # redrawn at every step
    # noise around the linear ramp, as the reference code can combine them
    ramp = IFTConfig(lam=0.8, lam_min=0.2, schedule="linear-noisy", warmup_steps=10, noise_std=0.3)
    for step, base in ((0, 0.2), (5, 0.5), (20, 0.8)):
        assert ramp.lam_at(step, [generator(7)]).item() == pytest.approx(base * (1 + 0.3 * eps))


def test_ift_training_follows_the_linear_schedule(paper: FrozenLakeMDP) -> None:
    data = StepBatch.from_trajectories(paper, [paper.optimal_demonstration()])
    rule = make_rule("ift", lam=0.8, schedule="linear", warmup_steps=4)
    result = train(MLPPolicy(paper.n_states, 4, seeds=2), rule, paper, data, TrainConfig(steps=6))
    np.testing.assert_allclose(
        result.history["lambda"], np.repeat([[0.0], [0.2], [0.4], [0.6], [0.8], [0.8]], 2, 1), atol=1e-7
    )


@pytest.mark.parametrize("slippery, lam", [(False, 1.0), (True, 1.0), (True, 0.3)])
def test_ift_mixed_inputs(slippery: bool, lam: float, generators) -> None:
    model = FrozenLakeMDP.from_map("paper", slippery=slippery, success_rate=0.6)
    trajectories = [model.optimal_demonstration(rng=seed) for seed in range(3)]
    data = StepBatch.from_trajectories(model, trajectories)
    policy = MLPPolicy(model.n_states, 4, seeds=3)
    rule = IFT(IFTConfig(lam=lam))
    rule.setup(policy, model, generators(policy))
    mixed = rule.mixed_inputs(policy, data, lam).numpy()
    greedy = policy.action_probs().argmax(-1).numpy()  # (K, S)
    eye = np.eye(model.n_states)
    ids, mask = data.ids.numpy(), data.mask.numpy()
    moved = 0
    for k in range(3):
        for b in range(len(trajectories)):
            for t in range(ids.shape[1]):
                truth = eye[ids[b, t]]
                if t == 0 or not (mask[b, t] and mask[b, t - 1]):
                    expected = truth  # first step and padding keep the ground truth
                else:
                    predicted = model.P[ids[b, t - 1], greedy[k, ids[b, t - 1]]]  # where the greedy action leads
                    if not slippery:
                        assert predicted.max() == 1.0
                        predicted = eye[predicted.argmax()]
                    expected = (1 - lam) * truth + lam * predicted
                    moved += not np.allclose(predicted, truth)
                np.testing.assert_allclose(mixed[k, b, t], expected, atol=1e-6)
    assert moved > 0  # the policy's own predictions do leave the demonstrated route somewhere


# -- IFT on tokens: exactly the reference's mixing ------------------------------------------------------------
def set_up_ift(policy: TinyGPT, world: TokenWorld, **config) -> IFT:
    """An IFT rule set up on ``policy`` as the training loop does it."""
    rule = IFT(IFTConfig(**config))
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    return rule


def test_ift_mixes_predictions_at_answer_positions_only(reverse, tiny):
    policy = tiny(reverse)
    examples = [("reverse apple:", "elppa"), ("reverse cactus:", "sutcac")]
    batch = reverse.step_batch(examples)
    rule = set_up_ift(policy, reverse, lam=0.3)
    with torch.no_grad():
        policy.wte.add_(0.5)  # an optimiser step the frozen copy has not seen yet
        mixed = rule.mixed_inputs(policy, batch, 0.3)
        frozen = policy.wte.detach() - 0.5
        truth = frozen[torch.arange(policy.n_seeds)[:, None, None], batch.ids]  # every input reads the frozen copy
        predicted = policy(truth).argmax(-1)  # yhat_{t+1} from the ground-truth prefix up to t
    expected = truth.clone()
    for b, (prompt, answer) in enumerate(examples):
        # positions whose input is an answer token: after <bos> + prompt, before the final <eos>
        for t in range(1 + len(prompt), 1 + len(prompt) + len(answer)):
            for k in range(policy.n_seeds):
                expected[k, b, t] = 0.7 * truth[k, b, t] + 0.3 * frozen[k, predicted[k, b, t - 1]]
    torch.testing.assert_close(mixed, expected)
    rule.after_step(policy)  # re-synced: the predictions now use the updated table
    assert torch.equal(rule.frozen_table, policy.embedding_table().detach())


def test_ift_with_lambda_0_and_gamma_0_is_exactly_sft_on_tiny_gpt(reverse, tiny):
    policy = tiny(reverse)
    batch = reverse.training_data().demos
    rule = set_up_ift(policy, reverse, lam=0.0, gamma=0.0)
    ift_loss, _ = rule.loss(policy, batch, 0)
    sft_loss = sft_loss_from_logps(step_logps(policy, batch), batch.mask)
    assert torch.equal(ift_loss, sft_loss)
    # Same gradient for every weight but the token embedding, which IFT reads from its frozen copy only.
    params = [p for name, p in policy.named_parameters() if name != "wte"]
    ift_grads = torch.autograd.grad(ift_loss.sum(), [policy.wte, *params], allow_unused=True)
    sft_grads = torch.autograd.grad(sft_loss.sum(), params)
    assert ift_grads[0] is None
    assert all(torch.equal(a, b) for a, b in zip(ift_grads[1:], sft_grads))


def test_ift_live_embedding_ablation_matches_sft_in_every_gradient(reverse, tiny):
    policy = tiny(reverse)
    batch = reverse.training_data().demos
    rule = set_up_ift(policy, reverse, lam=0.0, gamma=0.0, embedding="live")
    ift_loss, _ = rule.loss(policy, batch, 0)
    sft_loss = sft_loss_from_logps(step_logps(policy, batch), batch.mask)
    assert torch.equal(ift_loss, sft_loss)
    params = list(policy.parameters())
    ift_grads = torch.autograd.grad(ift_loss.sum(), params)
    sft_grads = torch.autograd.grad(sft_loss.sum(), params)
    assert all(torch.equal(a, b) for a, b in zip(ift_grads, sft_grads))
    with pytest.raises(ValueError, match=r"embedding='tied'.*'frozen', 'live'"):
        IFTConfig(embedding="tied")


def test_ift_loss_uses_propagation_weights_with_their_gradient(reverse, tiny):
    policy = tiny(reverse)
    batch = reverse.training_data().demos
    rule = set_up_ift(policy, reverse, lam=0.2, gamma=0.95)
    loss, _ = rule.loss(policy, batch, 0)
    logps = batch.logps(policy(rule.mixed_inputs(policy, batch, 0.2)))
    n = batch.mask.sum(-1)
    weights = propagation_weights(logps, batch.mask, gamma=0.95)
    torch.testing.assert_close(loss, ((-logps * weights).sum(-1) / n).mean(-1), rtol=0, atol=0)
    # weights are not detached: the gradient differs from the one with constant weights
    params = [p for name, p in policy.named_parameters() if name != "wte"]  # wte: read from the frozen copy
    grad = torch.autograd.grad(loss.sum(), params, retain_graph=True)
    detached = ((-logps * weights.detach()).sum(-1) / n).mean(-1)
    grad_detached = torch.autograd.grad(detached.sum(), params)
    assert any(not torch.allclose(a, b) for a, b in zip(grad, grad_detached))
