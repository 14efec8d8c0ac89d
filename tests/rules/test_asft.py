"""ASFT: DFT plus a KL anchor, both KL forms on hand-made logits against the authors' formula written out, their
gradients, the reference frozen at the stage's start, seed independence, every policy kind in both worlds, and a
run on the 4x4 map."""

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

# the reference (the policy as the stage starts): pi_ref(.|0) = (1/2, 1/2), pi_ref(.|1) = (1/5, 4/5),
# pi_ref(.|2) = (3/4, 1/4); the policy it has moved to: pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
REF_ROWS = [[0.0, 0.0], [0.0, math.log(4)], [math.log(3), 0.0]]
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
PI = [[1 / 4, 3 / 4], [2 / 3, 1 / 3], [1 / 2, 1 / 2]]
PI_REF = [[1 / 2, 1 / 2], [1 / 5, 4 / 5], [3 / 4, 1 / 4]]
# Sequence A: three steps at inputs 0, 1, 2 (actions 0, 1, 0); sequence B: two steps (inputs 1, 0; actions 1, 1)
DATA = ([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [1, 1, 0]], [[True, True, True], [True, True, False]])


def tabular(rows: list[list[float]]) -> TabularPolicy:
    policy = TabularPolicy(len(rows), len(rows[0]))
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([rows]))
    return policy


def batch(ids, actions, mask) -> StepBatch:
    ids_t = torch.tensor(ids)
    return StepBatch(ids_t, torch.tensor(actions), torch.tensor(mask), torch.zeros(ids_t.shape))


def moved_rule(name: str):
    """The rule set up on the reference policy (its frozen copy is the anchor), then the policy moved to ROWS."""
    policy = tabular(REF_ROWS)
    rule = make_rule(name)
    rule.setup(policy, None, seed_generators(0, policy.seeds))
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([ROWS]))
    return rule, policy


def hand_tokens(kl: str, coef: float) -> list[list[float]]:
    """The official code's per-token loss, -p log p + coef * KL, written out: F.kl_div(log pi, pi_ref).sum(-1) is
    sum_a pi_ref (log pi_ref - log pi) for "full"; k3 at the target token for "token"."""
    out = []
    for ids, actions, mask in zip(*DATA):
        tokens = []
        for s, a, m in zip(ids, actions, mask):
            if not m:
                continue
            p, q = PI[s][a], PI_REF[s][a]
            if kl == "full":
                divergence = sum(PI_REF[s][b] * (math.log(PI_REF[s][b]) - math.log(PI[s][b])) for b in range(2))
            else:
                divergence = q / p - math.log(q / p) - 1
            tokens.append(-p * math.log(p) + coef * divergence)
        out.append(tokens)
    return out


@pytest.mark.parametrize("kl", ["full", "token"])
@pytest.mark.parametrize("average", ["sequence", "token"])
def test_the_loss_is_the_authors_formula(kl: str, average: str) -> None:
    rule, policy = moved_rule(f'asft(kl="{kl}", average="{average}")')
    loss, metrics = rule.loss(policy, batch(*DATA), 0)
    tokens = hand_tokens(kl, 0.1)
    if average == "sequence":
        expected = sum(sum(t) / len(t) for t in tokens) / len(tokens)
    else:  # the official code: the summed token losses over the batch's target tokens
        expected = sum(map(sum, tokens)) / sum(map(len, tokens))
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # the parts it logs: DFT's term and the KL alone
    dft = hand_tokens(kl, 0.0)
    kl_only = [[(a - b) / 0.1 for a, b in zip(x, y)] for x, y in zip(tokens, dft)]
    if average == "sequence":
        assert metrics["kl"].item() == pytest.approx(sum(sum(t) / len(t) for t in kl_only) / 2, rel=1e-5)
    else:
        assert metrics["kl"].item() == pytest.approx(sum(map(sum, kl_only)) / 5, rel=1e-5)


def test_the_two_kl_forms_differ_and_kl_coef_scales_the_anchor() -> None:
    full, policy = moved_rule("asft")
    token, _ = moved_rule('asft(kl="token")')
    data = batch(*DATA)
    assert abs(full.loss(policy, data, 0)[0].item() - token.loss(policy, data, 0)[0].item()) > 1e-3
    none, _ = moved_rule("asft(kl_coef=0.0)")
    dft = make_rule("dft").loss(policy, data, 0)[0]
    torch.testing.assert_close(none.loss(policy, data, 0)[0], dft)


@pytest.mark.parametrize("kl", ["full", "token"])
def test_the_gradient_adds_the_anchors_pull_to_dfts(kl: str) -> None:
    """One token, action 1 at input 0: DFT's part is ``-p (onehot - pi)``; the full KL(pi_ref || pi) adds
    ``coef (pi - pi_ref)`` on the position's logits, the token estimator ``coef (1 - p_ref / p) (onehot - pi)``."""
    rule, policy = moved_rule(f'asft(kl="{kl}")')
    data = batch([[0]], [[1]], [[True]])
    loss, _ = rule.loss(policy, data, 0)
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    pi, ref, onehot = torch.tensor(PI[0]), torch.tensor(PI_REF[0]), torch.tensor([0.0, 1.0])
    expected = -(3 / 4) * (onehot - pi)
    expected += 0.1 * ((pi - ref) if kl == "full" else (1 - (1 / 2) / (3 / 4)) * (onehot - pi))
    torch.testing.assert_close(grad[0, 0], expected)
    assert grad[0, 1:].abs().max() == 0


def test_at_the_stages_start_asft_is_dft_in_loss_and_gradient() -> None:
    """The reference is the policy as the stage started: both KL forms and their gradients are 0 there."""
    world = FrozenLakeMDP.from_map("4x4")
    data = world.training_data(n_demos=3).demos
    for kl in ("full", "token"):
        policy = MLPPolicy(world.n_states, 4, hidden=8, seeds=2)
        rule = make_rule("asft", kl=kl)
        rule.setup(policy, world, seed_generators(0, policy.seeds))
        loss, metrics = rule.loss(policy, data, 0)
        dft = make_rule("dft").loss(policy, data, 0)[0]
        torch.testing.assert_close(loss, dft)
        assert metrics["kl"].abs().max() < 1e-6
        grads = torch.autograd.grad(loss.sum(), list(policy.parameters()))
        dft_grads = torch.autograd.grad(dft.sum(), list(policy.parameters()))
        for a, b in zip(grads, dft_grads):
            torch.testing.assert_close(a, b)


def test_a_seed_trains_the_same_alone_and_beside_other_seeds() -> None:
    world = FrozenLakeMDP.from_map("4x4")
    config = TrainConfig(steps=20, lr=1e-2, batch_size=1, seed=1)
    data = world.training_data(n_demos=3)
    alone = MLPPolicy(world.n_states, 4, hidden=16, seeds=[7])
    together = MLPPolicy(world.n_states, 4, hidden=16, seeds=[3, 7, 9])
    train(alone, "sft+asft", world, data, config)
    train(together, "sft+asft", world, data, config)
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
    result = train(policy, 'sft+asft(kl="token")', world, config=TrainConfig(steps=4))
    assert result.history["loss"].shape == (4, 2) and torch.isfinite(torch.tensor(result.history["loss"])).all()


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str) -> None:
    world = TokenWorld(AdditionTask(digits=1, n_train=40, n_test=10, seed=1))
    policy = _token_policy(kind, world)
    result = train(policy, "asft", world, config=TrainConfig(steps=2, batch_size=8))
    assert result.history["kl"].shape == (2, 2) and torch.isfinite(torch.tensor(result.history["loss"])).all()
    assert (result.history["kl"][0] == 0).all() and (result.history["kl"][1] > 0).all()  # anchored at the start


@pytest.mark.parametrize("kl", ["full", "token"])
def test_a_run_lowers_the_loss_and_raises_success_on_the_4x4_map(kl: str) -> None:
    world = FrozenLakeMDP.from_map("4x4")
    policy = TabularPolicy(world.n_states, 4, seeds=2)
    before = world.scores(policy, ["success"])["success"]
    result = train(policy, f'asft(kl="{kl}")', world, config=TrainConfig(steps=100, lr=0.1))
    after = world.scores(policy, ["success"])["success"]
    assert (result.history["nll"][-1] < result.history["nll"][0]).all()
    assert (after > before + 0.5).all() and (after > 0.8).all()  # the anchor holds it nearer the uniform start


def test_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="kl='reverse' is not supported"):
        make_rule("asft", kl="reverse")
    with pytest.raises(ValueError, match=r"kl_coef=-0\.1 is out of range"):
        make_rule("asft", kl_coef=-0.1)
