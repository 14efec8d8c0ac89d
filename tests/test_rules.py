"""The update rules' losses against hand computations and independent reference implementations."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP, PairBatch, PreferencePair, StepBatch
from iftgym.loop import TrainConfig, train
from iftgym.policies import MLPPolicy, TabularPolicy
from iftgym.rules import make_rule
from iftgym.rules.common import sequence_logps, step_logps
from iftgym.rules.dpo import DPOConfig, dpo_loss
from iftgym.rules.ift import IFT, IFTConfig, propagation_weights
from iftgym.rules.onpolicy import ValueHead, collect, gae
from iftgym.rules.orpo import ORPOConfig, log1mexp, orpo_loss
from iftgym.rules.ppo import PPOConfig
from iftgym.rules.reinforce import REINFORCEConfig
from iftgym.types import TrainingData
from iftgym.world import seed_generators

LN2 = math.log(2)


@pytest.fixture(scope="module")
def paper() -> FrozenLakeMDP:
    return FrozenLakeMDP.from_map("paper")


@pytest.fixture(scope="module")
def pairs(paper: FrozenLakeMDP) -> PairBatch:
    return PairBatch.from_pairs(
        paper, [PreferencePair(paper.optimal_demonstration(), paper.suboptimal_demonstration())]
    )


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def generators(policy: MLPPolicy, seed: int = 0) -> list[torch.Generator]:
    """One generator per seed of ``policy``, as the training loop hands a rule."""
    return seed_generators(seed, policy.seeds)


def tabular(rows: list[list[float]]) -> TabularPolicy:
    """A one-seed tabular policy with the given logits (one row per input id)."""
    policy = TabularPolicy(len(rows), len(rows[0]))
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([rows]))
    return policy


def batch(ids: list[list[int]], actions: list[list[int]], mask: list[list[bool]]) -> StepBatch:
    ids_t = torch.tensor(ids)
    return StepBatch(ids_t, torch.tensor(actions), torch.tensor(mask), torch.zeros(ids_t.shape))


# -- SFT --------------------------------------------------------------------------------------------------
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


# -- DPO --------------------------------------------------------------------------------------------------
def test_dpo_loss_hand_values() -> None:
    zero = torch.zeros(3)
    losses, chosen, rejected = dpo_loss(zero, zero, zero, zero, beta=0.1)
    torch.testing.assert_close(losses, torch.full((3,), LN2))
    # logits z = (pi_w - pi_l) - (ref_w - ref_l) = (-1 + 3) - 0 = 2, beta z = 1.
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0))
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert chosen.item() == pytest.approx(0.5 * (-1 + 2))
    assert rejected.item() == pytest.approx(0.5 * (-3 + 2))
    for eps in (0.1, 0.3):
        smoothed, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=eps)
        expected = (1 - eps) * math.log(1 + math.exp(-1)) + eps * math.log(1 + math.exp(1))
        assert smoothed.item() == pytest.approx(expected, rel=1e-6)


def test_dpo_small_beta_limit() -> None:
    beta = 1e-6
    pc = torch.tensor([-1.0], requires_grad=True)
    losses, _, _ = dpo_loss(pc, torch.tensor([-4.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=beta)
    assert losses.item() == pytest.approx(LN2, abs=1e-5)
    losses.sum().backward()
    # d/dpc [-log sigmoid(beta z)] = -beta sigmoid(-beta z) -> -beta / 2.
    assert pc.grad.item() == pytest.approx(-beta / 2, rel=1e-4)


def test_dpo_rule_logs_trl_metrics_with_correct_values(paper: FrozenLakeMDP, pairs: PairBatch) -> None:
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    rule = make_rule("dpo", beta=0.5)
    rule.setup(policy, paper, generators(policy))
    loss, metrics = rule.loss(policy, pairs, 0)
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= metrics.keys()
    torch.testing.assert_close(loss, torch.full((2,), LN2))  # the policy is its own reference at the start
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator(1)))
    loss, metrics = rule.loss(policy, pairs, 1)
    with torch.no_grad():
        reward_w = 0.5 * (sequence_logps(policy, pairs.chosen) - sequence_logps(rule.reference, pairs.chosen))
        reward_l = 0.5 * (sequence_logps(policy, pairs.rejected) - sequence_logps(rule.reference, pairs.rejected))
    torch.testing.assert_close(metrics["rewards/chosen"], reward_w.mean(-1))
    torch.testing.assert_close(metrics["rewards/rejected"], reward_l.mean(-1))
    torch.testing.assert_close(metrics["rewards/margins"], (reward_w - reward_l).mean(-1))
    torch.testing.assert_close(metrics["rewards/accuracies"], (reward_w > reward_l).float().mean(-1))
    torch.testing.assert_close(loss, -torch.nn.functional.logsigmoid(reward_w - reward_l).mean(-1))


class SpyWorld:
    """Delegates to a Frozen Lake model and records every ``sample`` call."""

    def __init__(self, model: FrozenLakeMDP) -> None:
        self.model = model
        self.calls: list[tuple[object, int, StepBatch]] = []

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def sample(self, policy, n_episodes, generators):
        out = self.model.sample(policy, n_episodes, generators)
        self.calls.append((policy, n_episodes, out))
        return out


def test_online_dpo_samples_rejected_from_the_current_policy(paper: FrozenLakeMDP) -> None:
    demos = StepBatch.from_trajectories(paper, [paper.optimal_demonstration()])
    policy = MLPPolicy(paper.n_states, 4, seeds=3)
    world = SpyWorld(paper)
    rule = make_rule("dpo-online", n_samples=5)
    assert (rule.name, rule.data) == ("dpo-online", "demos")
    rule.setup(policy, world, generators(policy))
    _, metrics = rule.loss(policy, demos, 0)
    ((sampled_from, n, rejected),) = world.calls
    assert sampled_from is policy and n == 5
    assert rejected.ids.shape[:2] == (3, 5)  # K seeds x n samples, each seed from its own policy
    with torch.no_grad():
        torch.testing.assert_close(metrics["logps/rejected"], sequence_logps(policy, rejected).mean(-1))
        torch.testing.assert_close(metrics["logps/chosen"], sequence_logps(policy, demos).mean(-1))
    rule.loss(policy, demos, 1)
    assert len(world.calls) == 2  # fresh samples at every step


# -- ORPO -------------------------------------------------------------------------------------------------
def test_orpo_loss_hand_value() -> None:
    m_w, m_l, beta = -0.5, -2.0, 0.25
    log_odds = (m_w - m_l) - (math.log(1 - math.exp(m_w)) - math.log(1 - math.exp(m_l)))
    expected = -m_w - beta * math.log(1 / (1 + math.exp(-log_odds)))
    losses, odds = orpo_loss(torch.tensor([m_w], dtype=torch.float64), torch.tensor([m_l], dtype=torch.float64), beta)
    assert odds.item() == pytest.approx(log_odds, rel=1e-12)
    assert losses.item() == pytest.approx(expected, rel=1e-12)


def test_orpo_rule_matches_orpo_loss_on_mean_logps(paper: FrozenLakeMDP, pairs: PairBatch) -> None:
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    loss, metrics = make_rule("orpo", beta=0.4).loss(policy, pairs, 0)
    with torch.no_grad():
        m_w = step_logps(policy, pairs.chosen).sum(-1) / pairs.chosen.mask.sum(-1)
        m_l = step_logps(policy, pairs.rejected).sum(-1) / pairs.rejected.mask.sum(-1)
    torch.testing.assert_close(loss, orpo_loss(m_w, m_l, 0.4)[0].mean(-1))
    torch.testing.assert_close(metrics["nll_loss"], -m_w.mean(-1))


@pytest.mark.parametrize("value", [0.0, -1e-9])
def test_orpo_is_stable_near_certain_trajectories(value: float) -> None:
    m_w = torch.tensor([value], requires_grad=True)
    m_l = torch.tensor([value], requires_grad=True)
    losses, log_odds = orpo_loss(m_w, m_l, 0.25)
    losses.sum().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(log_odds).all()
    assert torch.isfinite(m_w.grad).all() and torch.isfinite(m_l.grad).all()
    assert losses.item() == pytest.approx(-value + 0.25 * LN2, abs=1e-6)  # equal sides: log_odds = 0


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-13), (torch.float32, 1e-6)])
def test_log1mexp_matches_high_precision_reference(dtype: torch.dtype, rtol: float) -> None:
    xs = [-1e-12, -1e-9, -1e-6, -1e-3, -0.1, -0.5, -0.69, -0.7, -1.0, -3.0, -10.0, -30.0, -80.0]
    x = torch.tensor(xs, dtype=dtype)
    got = log1mexp(x).double()
    mpmath.mp.dps = 50
    expected = torch.tensor(
        [float(mpmath.log(-mpmath.expm1(mpmath.mpf(float(v))))) for v in x.double()], dtype=torch.float64
    )
    torch.testing.assert_close(got, expected, rtol=rtol, atol=0.0)


# -- IFT: relation propagation ----------------------------------------------------------------------------
def reference_weights(losses: list[float], mask: list[bool], gamma: float, kind: str, norm: str) -> list[float]:
    """DESIGN.md section 3 step 4, side "left", written out with plain Python loops."""
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


# -- IFT: the rule ----------------------------------------------------------------------------------------
def ift_loss_by_hand(rule: IFT, policy, data: StepBatch, detach_weights: bool) -> torch.Tensor:
    """IFT's loss rebuilt from its documented steps, optionally with detached propagation weights."""
    c = rule.config
    logps = data.logps(policy(rule.mixed_inputs(policy, data, c.lam)))
    weights = propagation_weights(
        logps.detach() if detach_weights else logps, data.mask, c.gamma, c.kind, c.side, c.norm
    )
    return ((-logps * weights).sum(-1) / data.mask.sum(-1)).mean(-1)


def grads(policy, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss.sum(), list(policy.parameters())))


def test_ift_gradient_flows_through_the_weights(paper: FrozenLakeMDP) -> None:
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


def test_ift_with_lambda_0_and_gamma_0_is_sft(paper: FrozenLakeMDP) -> None:
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


def test_lambda_schedules() -> None:
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


def test_ift_training_follows_the_linear_schedule(paper: FrozenLakeMDP) -> None:
    data = StepBatch.from_trajectories(paper, [paper.optimal_demonstration()])
    rule = make_rule("ift", lam=0.8, schedule="linear", warmup_steps=4)
    result = train(MLPPolicy(paper.n_states, 4, seeds=2), rule, paper, data, TrainConfig(steps=6))
    np.testing.assert_allclose(
        result.history["lambda"], np.repeat([[0.0], [0.2], [0.4], [0.6], [0.8], [0.8]], 2, 1), atol=1e-7
    )


@pytest.mark.parametrize("slippery, lam", [(False, 1.0), (True, 1.0), (True, 0.3)])
def test_ift_mixed_inputs(slippery: bool, lam: float) -> None:
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


# -- PPO / REINFORCE --------------------------------------------------------------------------------------
def test_gae_hand_computation() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0], [0.1, 0.3, 9.0, 9.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    # Sequence 0 by hand with gamma 0.9, lambda 0.8: deltas 0.9*0.2-0.5, 0.9*0.4-0.2, 1-0.4 (terminal after step 2).
    d = [0.9 * 0.2 - 0.5, 0.9 * 0.4 - 0.2, 1 - 0.4]
    a2 = d[2]
    a1 = d[1] + 0.72 * a2
    a0 = d[0] + 0.72 * a1
    # Sequence 1: deltas 0.9*0.3-0.1, 1-0.3.
    b1 = 1 - 0.3
    b0 = 0.9 * 0.3 - 0.1 + 0.72 * b1
    expected = torch.tensor([[a0, a1, a2, 0.0], [b0, b1, 0.0, 0.0]])
    torch.testing.assert_close(gae(rewards, values, mask, 0.9, 0.8), expected)
    # lambda = 1: returns-to-go minus values on real steps.
    returns = torch.tensor([[0.81, 0.9, 1.0, 0.0], [0.9, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(gae(rewards, values, mask, 0.9, 1.0), (returns - values) * mask)


def test_gae_lambda_1_is_returns_to_go_minus_values_on_random_batches() -> None:
    gen = generator(4)
    rewards = torch.rand(3, 5, 7, generator=gen)
    values = torch.randn(3, 5, 7, generator=gen)
    lengths = torch.randint(1, 8, (3, 5), generator=gen)
    mask = torch.arange(7) < lengths[..., None]
    returns = torch.zeros_like(rewards)
    for idx in np.ndindex(3, 5):
        running = 0.0
        for t in reversed(range(int(lengths[idx]))):
            running = rewards[idx][t].item() + 0.97 * running
            returns[idx][t] = running
    torch.testing.assert_close(gae(rewards, values, mask, 0.97, 1.0), (returns - values) * mask)


def ppo_setup(paper: FrozenLakeMDP, **overrides):
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    rule = make_rule("ppo", normalize_advantage=False, vf_coef=0.0, **overrides)
    rule.setup(policy, paper, generators(policy))
    rule.loss(policy, None, 0)  # collects the rollout
    return policy, rule


@pytest.mark.parametrize(
    "ratio, advantage, clipped",
    [(2.0, 1.0, True), (0.5, -1.0, True), (2.0, -1.0, False), (1.0, 1.0, False), (0.5, 1.0, False)],
)
def test_ppo_clipping(paper: FrozenLakeMDP, ratio: float, advantage: float, clipped: bool) -> None:
    policy, rule = ppo_setup(paper, clip_range=0.2)
    r = rule.rollout
    with torch.no_grad():
        logps = step_logps(policy, r.batch)
    rule.rollout = type(r)(
        r.batch, logps - math.log(ratio), torch.full_like(logps, advantage) * r.batch.mask, r.returns
    )
    loss, metrics = rule.loss(policy, None, 1)
    expected_surrogate = min(ratio * advantage, min(max(ratio, 0.8), 1.2) * advantage)
    torch.testing.assert_close(metrics["policy_loss"], torch.full((2,), -expected_surrogate))
    torch.testing.assert_close(metrics["clip_fraction"], torch.full((2,), float(ratio != 1.0)))
    gradient = grads(policy, loss)
    size = max(g.abs().max().item() for g in gradient)
    assert (size == 0.0) if clipped else (size > 1e-4)


def test_kl_penalty_shapes_the_rewards(paper: FrozenLakeMDP) -> None:
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    reference = MLPPolicy(paper.n_states, 4, seeds=[10, 11])
    critic = ValueHead(2, paper.n_states)  # zero values: returns = advantages
    plain = collect(policy, critic, reference, paper, 8, generators(policy, 5), 0.9, 1.0, kl_coef=0.0)
    shaped = collect(policy, critic, reference, paper, 8, generators(policy, 5), 0.9, 1.0, kl_coef=0.5)
    assert torch.equal(plain.batch.ids, shaped.batch.ids)  # same episodes
    with torch.no_grad():
        kl = step_logps(policy, shaped.batch) - step_logps(reference, shaped.batch)
    rewards = shaped.batch.rewards - 0.5 * kl * shaped.batch.mask
    torch.testing.assert_close(shaped.returns, gae(rewards, torch.zeros_like(rewards), shaped.batch.mask, 0.9, 1.0))
    torch.testing.assert_close(
        plain.returns, gae(plain.batch.rewards, torch.zeros_like(rewards), plain.batch.mask, 0.9, 1.0)
    )
    assert (shaped.returns - plain.returns).abs().max() > 1e-3
    # and the rules only build a reference when the penalty is on
    for name in ("ppo", "reinforce"):
        for kl_coef, has_reference in ((0.0, False), (0.1, True)):
            rule = make_rule(name, kl_coef=kl_coef)
            rule.setup(policy, paper, generators(policy))
            assert (rule.reference is not None) == has_reference


# -- validation -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "factory, field",
    [
        (lambda: IFTConfig(lam=1.5), "lam"),
        (lambda: IFTConfig(lam=-0.1), "lam"),
        (lambda: IFTConfig(lam_min=2.0), "lam_min"),
        (lambda: IFTConfig(gamma=1.01), "gamma"),
        (lambda: IFTConfig(kind="tokens"), "kind"),
        (lambda: IFTConfig(norm="L3"), "norm"),
        (lambda: IFTConfig(side="up"), "side"),
        (lambda: IFTConfig(schedule="cosine"), "schedule"),
        (lambda: IFTConfig(prediction="beam"), "prediction"),
        (lambda: IFTConfig(schedule="linear", lam=0.1, lam_min=0.5), "lam_min"),
        (lambda: IFTConfig(warmup_steps=0), "warmup_steps"),
        (lambda: IFTConfig(noise_std=-1.0), "noise_std"),
        (lambda: propagation_weights(torch.zeros(1, 2), torch.ones(1, 2), gamma=2.0), "gamma"),
        (lambda: propagation_weights(torch.zeros(1, 2), torch.ones(1, 2), norm="max"), "norm"),
        (lambda: DPOConfig(beta=0.0), "beta"),
        (lambda: DPOConfig(beta=-1.0), "beta"),
        (lambda: DPOConfig(label_smoothing=0.5), "label_smoothing"),
        (lambda: DPOConfig(label_smoothing=-0.1), "label_smoothing"),
        (lambda: DPOConfig(n_samples=0), "n_samples"),
        (lambda: ORPOConfig(beta=0.0), "beta"),
        (lambda: PPOConfig(n_episodes=0), "n_episodes"),
        (lambda: PPOConfig(update_epochs=0), "update_epochs"),
        (lambda: PPOConfig(gamma=1.5), "gamma"),
        (lambda: PPOConfig(gae_lambda=-0.1), "gae_lambda"),
        (lambda: PPOConfig(clip_range=0.0), "clip_range"),
        (lambda: PPOConfig(vf_coef=-1.0), "vf_coef"),
        (lambda: PPOConfig(ent_coef=-1.0), "ent_coef"),
        (lambda: PPOConfig(kl_coef=-1.0), "kl_coef"),
        (lambda: REINFORCEConfig(n_episodes=0), "n_episodes"),
        (lambda: REINFORCEConfig(gamma=-0.5), "gamma"),
        (lambda: REINFORCEConfig(kl_coef=-0.5), "kl_coef"),
        (lambda: TrainConfig(steps=0), "steps"),
        (lambda: TrainConfig(lr=0.0), "lr"),
        (lambda: TrainConfig(optimizer="rmsprop"), "optimizer"),
        (lambda: TrainConfig(weight_decay=-1.0), "weight_decay"),
        (lambda: TrainConfig(batch_size=0), "batch_size"),
        (lambda: TrainConfig(eval_every=-1), "eval_every"),
        (lambda: make_rule("ift", lam=3.0), "lam"),
    ],
)
def test_out_of_range_values_name_the_field(factory, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        factory()


def test_make_rule_rejects_unknown_names_and_hyper_parameters() -> None:
    with pytest.raises(ValueError, match=r"unknown rule 'kto'.*sft"):
        make_rule("kto")
    with pytest.raises(ValueError, match=r"rule 'dpo' has no hyper-parameter gamma.*beta"):
        make_rule("dpo", gamma=0.9)
    with pytest.raises(ValueError, match="online"):  # fixed by the rule's name, not a free hyper-parameter
        make_rule("dpo", online=True)
    with pytest.raises(ValueError, match="none"):
        make_rule("sft", lr=0.1)


def test_training_data_must_hold_what_the_rule_needs(paper: FrozenLakeMDP) -> None:
    demos = StepBatch.from_trajectories(paper, [paper.optimal_demonstration()])
    policy = MLPPolicy(paper.n_states, 4)
    before = [p.detach().clone() for p in policy.parameters()]
    for algorithm in ("dpo", "orpo", "sft+dpo"):
        with pytest.raises(ValueError, match="preference pairs"):
            train(policy, algorithm, paper, TrainingData(demos=demos), TrainConfig(steps=2))
    with pytest.raises(ValueError, match="demonstrations"):
        train(policy, "sft", paper, TrainingData(), TrainConfig(steps=2))
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))  # failed before training
    with pytest.raises(ValueError, match="unknown rule 'kto' in algorithm 'sft\\+kto'"):
        train(policy, "sft+kto", paper, TrainingData(demos=demos), TrainConfig(steps=2))
