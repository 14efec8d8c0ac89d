"""PSFT: PPO's clipped surrogate with advantage 1 on hand-made logits against the formula written out, the
gradient (clipped tokens get none), the old policy refreshed every update_epochs steps, seed independence, every
policy kind in both worlds, and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym import FrozenLakeMDP, TrainConfig, train
from iftgym.policies import GRUPolicy, HFPolicy, MLPPolicy, TabularPolicy, TinyGPT
from iftgym.rules import make_rule
from iftgym.types import StepBatch
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.tasks import AdditionTask

# the old policy (as the last refresh found it) and the policy it has moved to since
OLD_ROWS = [[0.0, 0.0], [0.0, math.log(4)], [math.log(3), 0.0]]
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
PI = [[1 / 4, 3 / 4], [2 / 3, 1 / 3], [1 / 2, 1 / 2]]
PI_OLD = [[1 / 2, 1 / 2], [1 / 5, 4 / 5], [3 / 4, 1 / 4]]
# ratios: A: 1/2, 5/12, 2/3 (below 1 - eps: unclipped); B: 10/3 (above 1 + eps: clipped), 3/2 (clipped)
DATA = ([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [0, 1, 0]], [[True, True, True], [True, True, False]])


def tabular(rows: list[list[float]]) -> TabularPolicy:
    policy = TabularPolicy(len(rows), len(rows[0]))
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([rows]))
    return policy


def batch(ids, actions, mask) -> StepBatch:
    ids_t = torch.tensor(ids)
    return StepBatch(ids_t, torch.tensor(actions), torch.tensor(mask), torch.zeros(ids_t.shape))


def moved_rule(name: str):
    """The rule set up and collected at step 0 on the old policy, then the policy moved to ROWS."""
    policy = tabular(OLD_ROWS)
    rule = make_rule(name)
    rule.setup(policy, None, seed_generators(0, policy.seeds))
    rule.collect(policy, 0)
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([ROWS]))
    return rule, policy


def hand_tokens(eps: float) -> list[list[float]]:
    """-min(r A, clip(r, 1 - eps, 1 + eps) A) with A = 1, token by token."""
    out = []
    for ids, actions, mask in zip(*DATA):
        ratios = [PI[s][a] / PI_OLD[s][a] for s, a, m in zip(ids, actions, mask) if m]
        out.append([-min(r * 1.0, min(max(r, 1 - eps), 1 + eps) * 1.0) for r in ratios])
    return out


@pytest.mark.parametrize("eps", [0.2, 0.6])
@pytest.mark.parametrize("average", ["sequence", "token"])
def test_the_loss_is_the_clipped_surrogate_with_advantage_1(eps: float, average: str) -> None:
    rule, policy = moved_rule(f'psft(clip_range={eps}, average="{average}")')
    loss, metrics = rule.loss(policy, batch(*DATA), 1)  # step 1: the old policy is still step 0's
    tokens = hand_tokens(eps)
    if average == "sequence":
        expected = sum(sum(t) / len(t) for t in tokens) / len(tokens)
        clipped = (0 / 3 + 2 / 2) / 2 if eps == 0.2 else (0 / 3 + 1 / 2) / 2
    else:
        expected = sum(map(sum, tokens)) / sum(map(len, tokens))
        clipped = 2 / 5 if eps == 0.2 else 1 / 5
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["clip_fraction"].item() == pytest.approx(clipped)


def test_a_clipped_token_gets_no_gradient_and_the_others_get_the_ratios() -> None:
    """``-d min(r, clip(r)) / dz``: 0 above ``1 + eps``, ``-r (onehot - pi)`` elsewhere (``dr = r dlog p``)."""
    for s, a, clipped in ((1, 0, True), (0, 0, False)):  # ratio 10/3 (clipped), 1/2 (below the range: kept)
        rule, policy = moved_rule("psft")
        loss, _ = rule.loss(policy, batch([[s]], [[a]], [[True]]), 1)
        (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
        if clipped:
            assert grad.abs().max() == 0
        else:
            r, onehot = PI[s][a] / PI_OLD[s][a], torch.nn.functional.one_hot(torch.tensor(a), 2).float()
            torch.testing.assert_close(grad[0, s], -r * (onehot - torch.tensor(PI[s])))


def test_the_old_policy_is_refreshed_every_update_epochs_steps() -> None:
    rule, policy = moved_rule("psft(update_epochs=2)")
    data = batch(*DATA)
    assert rule.loss(policy, data, 1)[1]["ratio"].item() != pytest.approx(1.0)
    rule.collect(policy, 1)  # not a refresh step
    assert rule.loss(policy, data, 1)[1]["ratio"].item() != pytest.approx(1.0)
    rule.collect(policy, 2)  # the old policy becomes the current one: every ratio is 1
    loss, metrics = rule.loss(policy, data, 2)
    assert metrics["ratio"].item() == pytest.approx(1.0) and loss.item() == pytest.approx(-1.0)
    # and with ratio 1 the gradient is SFT's
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    (sft_grad,) = torch.autograd.grad(make_rule("sft").loss(policy, data, 0)[0].sum(), [policy.logits])
    torch.testing.assert_close(grad, sft_grad)


def test_a_seed_trains_the_same_alone_and_beside_other_seeds() -> None:
    world = FrozenLakeMDP.from_map("4x4")
    config = TrainConfig(steps=20, lr=5e-2, batch_size=1, seed=1)
    data = world.training_data(n_demos=3)
    alone = MLPPolicy(world.n_states, 4, hidden=16, seeds=[7])
    together = MLPPolicy(world.n_states, 4, hidden=16, seeds=[3, 7, 9])
    train(alone, "sft+psft", world, data, config)
    train(together, "sft+psft", world, data, config)
    torch.testing.assert_close(alone.action_probs()[0], together.action_probs()[1], rtol=0, atol=1e-6)


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
    result = train(policy, "psft(update_epochs=2)", world, config=TrainConfig(steps=3))
    assert result.history["loss"].shape == (3, 2) and torch.isfinite(torch.tensor(result.history["loss"])).all()


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str) -> None:
    world = TokenWorld(AdditionTask(digits=1, n_train=40, n_test=10, seed=1))
    policy = _token_policy(kind, world)
    result = train(policy, "psft(update_epochs=2)", world, config=TrainConfig(steps=3, batch_size=8))
    ratio = result.history["ratio"]
    assert (ratio[[0, 2]] == 1).all() and (ratio[1] != 1).all()  # refreshed at steps 0 and 2


def test_a_run_lowers_the_loss_and_raises_success_on_the_4x4_map() -> None:
    world = FrozenLakeMDP.from_map("4x4")
    policy = TabularPolicy(world.n_states, 4, seeds=2)
    before = world.scores(policy, ["success"])["success"]
    result = train(policy, "psft", world, config=TrainConfig(steps=100, lr=0.1))
    after = world.scores(policy, ["success"])["success"]
    assert (result.history["nll"][-1] < result.history["nll"][0]).all()
    assert (after > before + 0.5).all() and (after > 0.9).all()


def test_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="update_epochs=0 is out of range"):
        make_rule("psft", update_epochs=0)
    with pytest.raises(ValueError, match=r"clip_range=0\.0 is out of range"):
        make_rule("psft", clip_range=0.0)
