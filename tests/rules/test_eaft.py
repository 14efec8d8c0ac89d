"""EAFT: the entropy-weighted token losses on hand-made logits against the authors' formula written out (each
implementation's normalisation), the gradient with the weight held constant, seed independence, every policy kind
in both worlds, and a run on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym.rules import make_rule

# three actions: pi(.|0) = (1/10, 3/10, 6/10), pi(.|1) = (1/2, 1/4, 1/4), pi(.|2) = (1/3, 1/3, 1/3)
ROWS = [[0.0, math.log(3), math.log(6)], [math.log(2), 0.0, 0.0], [0.0, 0.0, 0.0]]
PI = [[1 / 10, 3 / 10, 6 / 10], [1 / 2, 1 / 4, 1 / 4], [1 / 3, 1 / 3, 1 / 3]]
# Sequence A: inputs 0, 1, 2 with actions 2, 0, 1; sequence B: inputs 1, 0 with actions 1, 1, then padding
DATA = ([[0, 1, 2], [1, 0, 0]], [[2, 0, 1], [1, 1, 0]], [[True, True, True], [True, True, False]])


def hand_weight(probs: list[float], k: int, alpha: float, normalize: str) -> float:
    """The authors' weight written out: the k largest probabilities renormalised, their entropy, divided by ln k
    (the paper, axolotl), by 3.0 (LLaMA-Factory) or by nothing, to the power alpha."""
    top = sorted(probs, reverse=True)[: min(k, len(probs))]
    q = [x / sum(top) for x in top]
    entropy = -sum(x * math.log(x) for x in q)
    divisor = {"ln_k": math.log(len(top)), "llama-factory": 3.0, "none": 1.0}[normalize]
    return (entropy / divisor) ** alpha


def hand_tokens(k: int, alpha: float, normalize: str) -> list[list[float]]:
    """DATA's weighted token losses ``-w log p``, a list per sequence."""
    return [[hand_weight(PI[s], k, alpha, normalize) * -math.log(PI[s][a]) for s, a, m in zip(*row) if m]
            for row in zip(*DATA)]  # fmt: skip


@pytest.mark.parametrize("normalize", ["ln_k", "llama-factory", "none"])
@pytest.mark.parametrize(("k", "alpha"), [(2, 1.0), (20, 1.0), (2, 0.5)])
@pytest.mark.parametrize("average", ["sequence", "token"])
def test_the_loss_is_the_authors_formula(
    normalize: str, k: int, alpha: float, average: str, tabular, step_batch, hand_average
) -> None:
    policy, data = tabular(ROWS), step_batch(*DATA)
    rule = make_rule("eaft", k=k, alpha=alpha, normalize=normalize, average=average)
    loss, metrics = rule.loss(policy, data, 0)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(hand_average(hand_tokens(k, alpha, normalize), average), rel=1e-6)
    sft = make_rule("sft", average=average).loss(policy, data, 0)[0]
    assert metrics["nll"].item() == pytest.approx(sft.item(), rel=1e-6)


def test_the_normalisations_differ_as_stated(tabular, step_batch) -> None:
    """A uniform top-k has entropy ln k: weight 1 under ln_k, ln k / 3 under LLaMA-Factory's constant, ln k
    unnormalised."""
    policy = tabular(ROWS)
    data = step_batch([[2]], [[0]], [[True]])  # the uniform row: H_top3 = ln 3
    weights = {n: make_rule("eaft", normalize=n).loss(policy, data, 0)[1]["weight"].item()
               for n in ("ln_k", "llama-factory", "none")}  # fmt: skip
    assert weights["ln_k"] == pytest.approx(1.0, rel=1e-6)
    assert weights["llama-factory"] == pytest.approx(math.log(3) / 3, rel=1e-6)
    assert weights["none"] == pytest.approx(math.log(3), rel=1e-6)


def test_the_weight_gets_no_gradient(tabular, step_batch) -> None:
    """One token (action 2 at input 0): the gradient is ``w`` times SFT's, ``-w (onehot - pi)``; alpha 0 is SFT."""
    policy = tabular(ROWS)
    data = step_batch([[0]], [[2]], [[True]])
    loss, _ = make_rule("eaft", k=2).loss(policy, data, 0)
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    w = hand_weight(PI[0], 2, 1.0, "ln_k")
    expected = -w * (torch.tensor([0.0, 0.0, 1.0]) - torch.tensor(PI[0]))
    torch.testing.assert_close(grad[0, 0], expected)
    assert grad[0, 1:].abs().max() == 0
    sft = make_rule("sft").loss(policy, step_batch(*DATA), 0)[0]
    torch.testing.assert_close(make_rule("eaft", alpha=0.0).loss(policy, step_batch(*DATA), 0)[0], sft)


def test_a_seed_trains_the_same_alone_and_beside_other_seeds(seed_independent) -> None:
    seed_independent("sft+eaft")


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
def test_every_grid_policy_trains(kind: str, grid_run) -> None:
    result = grid_run(kind, 'eaft(normalize="llama-factory")', steps=3)
    assert result.history["loss"].shape == (3, 2)


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str, token_run) -> None:
    weight = token_run(kind, "eaft(k=4)", steps=2, batch_size=8).history["weight"]
    assert weight.shape == (2, 2) and ((weight > 0) & (weight <= 1)).all()


@pytest.mark.parametrize("normalize", ["ln_k", "llama-factory"])
def test_a_run_lowers_the_loss_and_raises_success_on_the_4x4_map(normalize: str, learns_on_4x4) -> None:
    learns_on_4x4(f'eaft(normalize="{normalize}")', lowers="nll")


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"normalize": "ln"}, "normalize='ln' is not supported"), ({"k": 1}, "k=1 is out of range")],
)
def test_bad_settings_are_one_clear_error(settings: dict, message: str, refused) -> None:
    refused("eaft", settings, message)
