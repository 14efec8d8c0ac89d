"""SFT's prior-leaning transforms (arXiv 2510.00526): -log p (unchanged), -p, -p^10 and the power family on hand-made
logits, their gradients, seed independence, every policy kind in both worlds, and runs on the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym.rules import make_rule

# pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
DATA = ([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [1, 1, 0]], [[True, True, True], [True, True, False]])
PROBS = [[1 / 4, 1 / 3, 1 / 2], [1 / 3, 3 / 4]]  # each sequence's demonstrated probabilities


def hand_tokens(f) -> list[list[float]]:
    """The token losses ``f(p)`` of DATA, a list per sequence."""
    return [[f(p) for p in seq] for seq in PROBS]


FORMULAS = {
    "log": lambda p: -math.log(p),
    "p": lambda p: -p,
    "p10": lambda p: -(p**10),
    "power(power=0.5)": lambda p: -(p**0.5 - 1) / 0.5,
    "power(power=0)": lambda p: -math.log(p),
}


@pytest.mark.parametrize("transform", list(FORMULAS))
@pytest.mark.parametrize("average", ["sequence", "token"])
def test_each_transform_is_the_papers_formula(transform: str, average: str, tabular, step_batch, hand_average) -> None:
    name, _, power = transform.partition("(power=")
    settings = f'transform="{name}", average="{average}"' + (f", power={power[:-1]}" if power else "")
    loss, metrics = make_rule(f"sft({settings})").loss(tabular(ROWS), step_batch(*DATA), 0)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(hand_average(hand_tokens(FORMULAS[transform]), average), rel=1e-6)
    if name != "log":  # SFT's loss on the same batch, logged beside
        assert metrics["nll"].item() == pytest.approx(hand_average(hand_tokens(FORMULAS["log"]), average), rel=1e-6)


def test_the_default_is_sft_exactly_as_before(tabular, step_batch, hand_average) -> None:
    policy, data = tabular(ROWS), step_batch(*DATA)
    for average in ("sequence", "token"):
        loss, metrics = make_rule(f'sft(average="{average}")').loss(policy, data, 0)
        explicit, _ = make_rule(f'sft(transform="log", average="{average}")').loss(policy, data, 0)
        assert torch.equal(loss, explicit) and list(metrics) == ["loss"]
        assert loss.item() == pytest.approx(hand_average(hand_tokens(FORMULAS["log"]), average), rel=1e-6)


@pytest.mark.parametrize(("transform", "power"), [("log", 0.0), ("p", 1.0), ("p10", 10.0)])
def test_the_gradient_is_minus_p_to_the_k_times_sfts(transform: str, power: float, tabular, step_batch) -> None:
    """One token (action 1 at input 0, p = 3/4): ``-grad p^k = -k p^k (onehot - pi)`` on its state's logits (k = 0:
    SFT's ``-(onehot - pi)``); ``power`` k gives ``-p^k (onehot - pi)``, the same direction over k."""
    data = step_batch([[0]], [[1]], [[True]])
    sft_direction = -(torch.tensor([0.0, 1.0]) - torch.tensor([1 / 4, 3 / 4]))
    policy = tabular(ROWS)
    loss, _ = make_rule(f'sft(transform="{transform}")').loss(policy, data, 0)
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    torch.testing.assert_close(grad[0, 0], max(power, 1.0) * (3 / 4) ** power * sft_direction)
    assert grad[0, 1:].abs().max() == 0
    policy = tabular(ROWS)
    loss, _ = make_rule(f'sft(transform="power", power={power})').loss(policy, data, 0)
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    torch.testing.assert_close(grad[0, 0], (3 / 4) ** power * sft_direction)


def test_transform_p_has_dfts_gradient(tabular, step_batch) -> None:
    policy, data = tabular(ROWS), step_batch(*DATA)
    grad_p = torch.autograd.grad(make_rule('sft(transform="p")').loss(policy, data, 0)[0].sum(), [policy.logits])
    grad_dft = torch.autograd.grad(make_rule("dft").loss(policy, data, 0)[0].sum(), [policy.logits])
    torch.testing.assert_close(grad_p[0], grad_dft[0])


def test_a_seed_trains_the_same_alone_and_beside_other_seeds(seed_independent) -> None:
    seed_independent('sft+sft(transform="p10")')


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
def test_every_grid_policy_trains(kind: str, grid_run) -> None:
    result = grid_run(kind, 'sft(transform="power", power=0.5)', steps=3)
    assert result.history["loss"].shape == (3, 2)


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str, token_run) -> None:
    result = token_run(kind, 'sft(transform="p")', steps=2, batch_size=8)
    assert result.history["nll"].shape == (2, 2)


@pytest.mark.parametrize("transform", ["p", "p10"])
def test_a_run_raises_success_on_the_4x4_map_from_a_prior(transform: str, learns_on_4x4) -> None:
    """From a uniform policy every demonstrated token has p = 1/4, so -p^10 starts with almost no gradient: the
    prior-leaning transforms learn from a policy that already leans the right way (a few SFT steps first). The nll
    is logged by the second stage only."""
    learns_on_4x4(f'sft+sft(transform="{transform}")', steps=60, lowers="nll", success_above=0.9)


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"transform": "p2"}, "transform='p2' is not supported"),
     ({"transform": "power", "power": -1.0}, r"power=-1\.0 is out of range")],
)  # fmt: skip
def test_bad_settings_are_one_clear_error(settings: dict, message: str, refused) -> None:
    refused("sft", settings, message)
