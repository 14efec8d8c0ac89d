"""EAFT: the entropy-weighted token losses on hand-made logits against the authors' formula written out (each
implementation's normalisation), the gradient with the weight held constant, seed independence, every policy kind
in both worlds, and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym import FrozenLakeMDP, TrainConfig, train
from iftgym.policies import GRUPolicy, HFPolicy, MLPPolicy, TabularPolicy, TinyGPT
from iftgym.rules import make_rule
from iftgym.types import StepBatch
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.tasks import AdditionTask

# three actions: pi(.|0) = (1/10, 3/10, 6/10), pi(.|1) = (1/2, 1/4, 1/4), pi(.|2) = (1/3, 1/3, 1/3)
ROWS = [[0.0, math.log(3), math.log(6)], [math.log(2), 0.0, 0.0], [0.0, 0.0, 0.0]]
PI = [[1 / 10, 3 / 10, 6 / 10], [1 / 2, 1 / 4, 1 / 4], [1 / 3, 1 / 3, 1 / 3]]
# Sequence A: inputs 0, 1, 2 with actions 2, 0, 1; sequence B: inputs 1, 0 with actions 1, 1, then padding
DATA = ([[0, 1, 2], [1, 0, 0]], [[2, 0, 1], [1, 1, 0]], [[True, True, True], [True, True, False]])


def tabular(rows: list[list[float]]) -> TabularPolicy:
    policy = TabularPolicy(len(rows), len(rows[0]))
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([rows]))
    return policy


def batch(ids, actions, mask) -> StepBatch:
    ids_t = torch.tensor(ids)
    return StepBatch(ids_t, torch.tensor(actions), torch.tensor(mask), torch.zeros(ids_t.shape))


def hand_weight(probs: list[float], k: int, alpha: float, normalize: str) -> float:
    """The authors' weight written out: the k largest probabilities renormalised, their entropy, divided by ln k
    (the paper, axolotl), by 3.0 (LLaMA-Factory) or by nothing, to the power alpha."""
    top = sorted(probs, reverse=True)[: min(k, len(probs))]
    q = [x / sum(top) for x in top]
    entropy = -sum(x * math.log(x) for x in q)
    divisor = {"ln_k": math.log(len(top)), "llama-factory": 3.0, "none": 1.0}[normalize]
    return (entropy / divisor) ** alpha


def hand_loss(k: int, alpha: float, normalize: str, average: str) -> float:
    tokens = [[hand_weight(PI[s], k, alpha, normalize) * -math.log(PI[s][a]) for s, a, m in zip(*row) if m]
              for row in zip(*DATA)]  # fmt: skip
    if average == "sequence":
        return sum(sum(t) / len(t) for t in tokens) / len(tokens)
    return sum(map(sum, tokens)) / sum(map(len, tokens))


@pytest.mark.parametrize("normalize", ["ln_k", "llama-factory", "none"])
@pytest.mark.parametrize(("k", "alpha"), [(2, 1.0), (20, 1.0), (2, 0.5)])
@pytest.mark.parametrize("average", ["sequence", "token"])
def test_the_loss_is_the_authors_formula(normalize: str, k: int, alpha: float, average: str) -> None:
    policy = tabular(ROWS)
    rule = make_rule("eaft", k=k, alpha=alpha, normalize=normalize, average=average)
    loss, metrics = rule.loss(policy, batch(*DATA), 0)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(hand_loss(k, alpha, normalize, average), rel=1e-6)
    assert metrics["nll"].item() == pytest.approx(make_rule("sft", average=average).loss(policy, batch(*DATA), 0)[0]
                                                  .item(), rel=1e-6)  # fmt: skip


def test_the_normalisations_differ_as_stated() -> None:
    """A uniform top-k has entropy ln k: weight 1 under ln_k, ln k / 3 under LLaMA-Factory's constant, ln k
    unnormalised."""
    policy = tabular(ROWS)
    data = batch([[2]], [[0]], [[True]])  # the uniform row: H_top3 = ln 3
    weights = {n: make_rule("eaft", normalize=n).loss(policy, data, 0)[1]["weight"].item()
               for n in ("ln_k", "llama-factory", "none")}  # fmt: skip
    assert weights["ln_k"] == pytest.approx(1.0, rel=1e-6)
    assert weights["llama-factory"] == pytest.approx(math.log(3) / 3, rel=1e-6)
    assert weights["none"] == pytest.approx(math.log(3), rel=1e-6)


def test_the_weight_gets_no_gradient() -> None:
    """One token (action 2 at input 0): the gradient is ``w`` times SFT's, ``-w (onehot - pi)``; alpha 0 is SFT."""
    policy = tabular(ROWS)
    data = batch([[0]], [[2]], [[True]])
    loss, _ = make_rule("eaft", k=2).loss(policy, data, 0)
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    w = hand_weight(PI[0], 2, 1.0, "ln_k")
    expected = -w * (torch.tensor([0.0, 0.0, 1.0]) - torch.tensor(PI[0]))
    torch.testing.assert_close(grad[0, 0], expected)
    assert grad[0, 1:].abs().max() == 0
    sft = make_rule("sft").loss(policy, batch(*DATA), 0)[0]
    torch.testing.assert_close(make_rule("eaft", alpha=0.0).loss(policy, batch(*DATA), 0)[0], sft)


def test_a_seed_trains_the_same_alone_and_beside_other_seeds() -> None:
    world = FrozenLakeMDP.from_map("4x4")
    config = TrainConfig(steps=20, lr=1e-2, batch_size=1, seed=1)
    data = world.training_data(n_demos=3)
    alone = MLPPolicy(world.n_states, 4, hidden=16, seeds=[7])
    together = MLPPolicy(world.n_states, 4, hidden=16, seeds=[3, 7, 9])
    train(alone, "sft+eaft", world, data, config)
    train(together, "sft+eaft", world, data, config)
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
    result = train(policy, 'eaft(normalize="llama-factory")', world, config=TrainConfig(steps=3))
    assert result.history["loss"].shape == (3, 2) and torch.isfinite(torch.tensor(result.history["loss"])).all()


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str) -> None:
    world = TokenWorld(AdditionTask(digits=1, n_train=40, n_test=10, seed=1))
    policy = _token_policy(kind, world)
    result = train(policy, "eaft(k=4)", world, config=TrainConfig(steps=2, batch_size=8))
    weight = result.history["weight"]
    assert weight.shape == (2, 2) and ((weight > 0) & (weight <= 1)).all()


@pytest.mark.parametrize("normalize", ["ln_k", "llama-factory"])
def test_a_run_lowers_the_loss_and_raises_success_on_the_4x4_map(normalize: str) -> None:
    world = FrozenLakeMDP.from_map("4x4")
    policy = TabularPolicy(world.n_states, 4, seeds=2)
    before = world.scores(policy, ["success"])["success"]
    result = train(policy, f'eaft(normalize="{normalize}")', world, config=TrainConfig(steps=100, lr=0.1))
    after = world.scores(policy, ["success"])["success"]
    assert (result.history["nll"][-1] < result.history["nll"][0]).all()
    assert (after > before + 0.5).all()


def test_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="normalize='ln' is not supported"):
        make_rule("eaft", normalize="ln")
    with pytest.raises(ValueError, match="k=1 is out of range"):
        make_rule("eaft", k=1)
