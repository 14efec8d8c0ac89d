"""CHORD: the mu schedule against the official function written out, the mixed loss on hand-made logits (the SFT-phi
term by hand, the GRPO part GRPO's own), the gradients at mu 0 and 1, seed independence, every policy kind in both
worlds, and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym import FrozenLakeMDP, TrainConfig, train
from iftgym.policies import GRUPolicy, HFPolicy, MLPPolicy, TabularPolicy, TinyGPT
from iftgym.rules import make_rule
from iftgym.rules.grpo import GroupSamples, group_advantages
from iftgym.types import StepBatch
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.tasks import AdditionTask

# pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
PI = [[1 / 4, 3 / 4], [2 / 3, 1 / 3], [1 / 2, 1 / 2]]
# demonstrations: A: inputs 0, 1, 2, actions 1, 0, 1 (p = 3/4, 2/3, 1/2); B: inputs 1, 0, actions 1, 0 (1/3, 1/4)
DEMOS = ([[0, 1, 2], [1, 0, 0]], [[1, 0, 1], [1, 0, 0]], [[True, True, True], [True, True, False]])


def tabular(rows: list[list[float]]) -> TabularPolicy:
    policy = TabularPolicy(len(rows), len(rows[0]))
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([rows]))
    return policy


def batch(ids, actions, mask) -> StepBatch:
    ids_t = torch.tensor(ids)
    return StepBatch(ids_t, torch.tensor(actions), torch.tensor(mask), torch.zeros(ids_t.shape))


def official_mu(step: int, warmup: int, decay: int, peak: float, valley: float) -> float:
    """Trinity-RFT's ``mu_schedule_function``, written out."""
    if step < warmup:
        return (step / warmup) * peak
    if step >= warmup + decay:
        return valley
    return (peak - valley) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / decay)) + valley


@pytest.mark.parametrize(("warmup", "decay", "peak", "valley"), [(50, 100, 0.5, 0.02), (0, 200, 0.9, 0.05),
                                                                   (0, 0, 0.1, 0.1), (3, 0, 0.4, 0.0)])  # fmt: skip
def test_mu_warms_up_then_decays_as_the_official_schedule(warmup: int, decay: int, peak: float, valley: float) -> None:
    rule = make_rule("chord", mu_warmup_steps=warmup, mu_decay_steps=decay, mu_peak=peak, mu_valley=valley)
    for step in range(0, 400, 7):
        assert rule.config.mu_at(step) == pytest.approx(official_mu(step, warmup, decay, peak, valley), abs=1e-12)
    if warmup:  # from 0 up to the peak (without a decay the official function drops to the valley there)
        assert rule.config.mu_at(0) == 0
        assert rule.config.mu_at(warmup) == pytest.approx(peak if decay else valley)


def hand_samples() -> GroupSamples:
    """Two groups of two one-step episodes at input 0 (actions 1, 0 | 0, 1; rewards 1, 0 | 0, 1)."""
    ids, actions = torch.zeros(1, 4, 1, dtype=torch.long), torch.tensor([[[1], [0], [0], [1]]])
    mask = torch.ones(1, 4, 1, dtype=torch.bool)
    rewards = torch.tensor([[[1.0], [0.0], [0.0], [1.0]]])
    total = rewards.sum(-1)
    return GroupSamples(StepBatch(ids, actions, mask, rewards), total, group_advantages(total, 2), None, None)


def chord_rule(name: str, policy):
    rule = make_rule(name)
    rule.setup(policy, FrozenLakeMDP.from_map("4x4"), seed_generators(0, policy.seeds))
    rule.grpo.samples = hand_samples()
    return rule


def hand_sft_phi(phi: bool, average: str) -> float:
    tokens = [[-(p * (1 - p) if phi else 1.0) * math.log(p) for p in seq] for seq in ([3 / 4, 2 / 3, 1 / 2],
                                                                                       [1 / 3, 1 / 4])]  # fmt: skip
    if average == "token":
        return sum(map(sum, tokens)) / 5
    return sum(sum(t) / len(t) for t in tokens) / 2


@pytest.mark.parametrize("phi", [True, False])
@pytest.mark.parametrize("average", ["token", "sequence"])
@pytest.mark.parametrize("step", [0, 10, 80, 200])
def test_the_loss_is_one_minus_mu_grpo_plus_mu_sft_phi(phi: bool, average: str, step: int) -> None:
    policy = tabular(ROWS)
    rule = chord_rule(f'chord(n_episodes=4, num_generations=2, phi={str(phi).lower()}, sft_average="{average}")',
                      policy)  # fmt: skip
    loss, metrics = rule.loss(policy, batch(*DEMOS), step)
    grpo = make_rule("grpo", n_episodes=4, num_generations=2)
    grpo.samples = hand_samples()
    grpo_loss = grpo.loss(policy, None, step)[0].item()
    mu = official_mu(step, 50, 100, 0.5, 0.02)
    sft = hand_sft_phi(phi, average)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx((1 - mu) * grpo_loss + mu * sft, rel=1e-6, abs=1e-9)
    assert metrics["sft_loss"].item() == pytest.approx(sft, rel=1e-6)
    assert metrics["mu"].item() == pytest.approx(mu) and metrics["grpo_loss"].item() == pytest.approx(grpo_loss)
    assert metrics["reward"].item() == 0.5  # GRPO's metrics come along


def test_at_mu_1_the_gradient_is_the_phi_weighted_sfts_and_at_mu_0_grpos() -> None:
    """One demonstrated token (action 1 at input 0, p = 3/4): ``-p (1 - p) (onehot - pi)``."""
    policy = tabular(ROWS)
    one = batch([[0]], [[1]], [[True]])
    rule = chord_rule("chord(n_episodes=4, num_generations=2, mu_peak=1.0, mu_valley=1.0, mu_warmup_steps=0)", policy)
    (grad,) = torch.autograd.grad(rule.loss(policy, one, 0)[0].sum(), [policy.logits])
    expected = -(3 / 4) * (1 / 4) * (torch.tensor([0.0, 1.0]) - torch.tensor(PI[0]))
    torch.testing.assert_close(grad[0, 0], expected)
    assert grad[0, 1:].abs().max() == 0
    rule = chord_rule("chord(n_episodes=4, num_generations=2, mu_peak=0.0, mu_valley=0.0)", policy)
    (grad,) = torch.autograd.grad(rule.loss(policy, one, 5)[0].sum(), [policy.logits])
    grpo = make_rule("grpo", n_episodes=4, num_generations=2)
    grpo.samples = hand_samples()
    (grpo_grad,) = torch.autograd.grad(grpo.loss(policy, None, 5)[0].sum(), [policy.logits])
    torch.testing.assert_close(grad, grpo_grad)


def test_groups_are_sampled_as_grpo_samples_them() -> None:
    world = FrozenLakeMDP.from_map("4x4", slippery=True)
    policy = MLPPolicy(world.n_states, 4, hidden=8, seeds=2)
    chord, grpo = make_rule("chord(num_iterations=2)"), make_rule("grpo(num_iterations=2)")
    chord.setup(policy, world, seed_generators(0, policy.seeds))
    grpo.setup(policy, world, seed_generators(0, policy.seeds))
    for step in range(3):
        chord.collect(policy, step)
        grpo.collect(policy, step)
        for a, b in zip(chord.grpo.samples.batch.tensors(), grpo.samples.batch.tensors()):
            assert torch.equal(a, b)
    assert make_rule("chord").data == "demos"  # it needs demonstrations, and samples the world itself


def test_a_seed_trains_the_same_alone_and_beside_other_seeds() -> None:
    world = FrozenLakeMDP.from_map("4x4", slippery=True)
    config = TrainConfig(steps=20, lr=1e-2, batch_size=1, seed=1)
    data = world.training_data(n_demos=3)
    alone = MLPPolicy(world.n_states, 4, hidden=16, seeds=[7])
    together = MLPPolicy(world.n_states, 4, hidden=16, seeds=[3, 7, 9])
    train(alone, "sft+chord(mu_warmup_steps=2, mu_decay_steps=5)", world, data, config)
    train(together, "sft+chord(mu_warmup_steps=2, mu_decay_steps=5)", world, data, config)
    torch.testing.assert_close(alone.action_probs()[0], together.action_probs()[1], rtol=0, atol=1e-5)


def _token_policy(kind: str, world: TokenWorld):
    if kind == "tiny-gpt":
        return TinyGPT(world.n_ids, world.block_size, n_layer=1, n_head=2, n_embd=16, seeds=2, device="cpu")
    if kind == "gru":
        return GRUPolicy(world.n_ids, world.n_actions, hidden=16, seeds=2)
    config = {"model_type": "gpt2", "vocab_size": world.n_ids, "n_positions": 32, "n_embd": 16, "n_layer": 1,
              "n_head": 2, "bos_token_id": world.tokenizer.bos_id, "eos_token_id": world.eos}  # fmt: skip
    return HFPolicy(config, seeds=2, device="cpu")


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
def test_every_grid_policy_trains(kind: str) -> None:
    world = FrozenLakeMDP.from_map("4x4", slippery=True)
    policy = {"tabular": TabularPolicy(world.n_states, 4, seeds=2), "mlp": MLPPolicy(world.n_states, 4, hidden=8,
              seeds=2), "gru": GRUPolicy(world.n_states, 4, hidden=8, seeds=2)}[kind]  # fmt: skip
    result = train(policy, "sft+chord(beta=0.05, num_iterations=2)", world, config=TrainConfig(steps=4))
    assert result.history["mu"].shape == (2, 2) and torch.isfinite(torch.tensor(result.history["loss"])).all()


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str) -> None:
    world = TokenWorld(AdditionTask(digits=1, n_train=40, n_test=10, seed=1))
    policy = _token_policy(kind, world)
    rule = make_rule("chord", n_episodes=4, num_generations=2, mu_warmup_steps=1, loss_type="dr_grpo")
    result = train(policy, rule, world, config=TrainConfig(steps=2, batch_size=8))
    assert result.history["mu"][:, 0].tolist() == pytest.approx([0.0, 0.5])
    assert torch.isfinite(torch.tensor(result.history["loss"])).all()


def test_a_run_raises_success_on_the_4x4_map() -> None:
    world = FrozenLakeMDP.from_map("4x4")
    policy = TabularPolicy(world.n_states, 4, seeds=2)
    before = world.scores(policy, ["success"])["success"]
    result = train(policy, "chord(mu_warmup_steps=10, mu_decay_steps=50)", world, config=TrainConfig(steps=100,
                   lr=0.1))  # fmt: skip
    after = world.scores(policy, ["success"])["success"]
    assert (result.history["nll"][-1] < result.history["nll"][0]).all()
    assert (after > before + 0.5).all()


def test_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"mu_peak=1\.5 is out of range"):
        make_rule("chord", mu_peak=1.5)
    with pytest.raises(ValueError, match="not a multiple of num_generations"):
        make_rule("chord", n_episodes=12)
    with pytest.raises(ValueError, match="loss_type='sapo' is not supported"):
        make_rule("chord", loss_type="sapo")
