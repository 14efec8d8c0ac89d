"""ASFT: DFT plus a KL anchor, both KL forms on hand-made logits against the authors' formula written out, their
gradients, the reference frozen at the stage's start, the token form's reference log-probabilities computed once per
stage training as a reference pass at every step, seed independence, every policy kind in both worlds, and a run on
the 4x4 map."""

from __future__ import annotations

import math

import pytest
import torch

from iftgym.rules import make_rule
from iftgym.rules.asft import ASFT, ASFTConfig

# moved_rule(name, REF_ROWS, ROWS) sets the rule up on the reference, the policy as the stage starts (its frozen copy
# is the anchor), then moves the policy: pi_ref(.|0) = (1/2, 1/2), pi_ref(.|1) = (1/5, 4/5),
# pi_ref(.|2) = (3/4, 1/4); the policy it has moved to: pi(.|0) = (1/4, 3/4), pi(.|1) = (2/3, 1/3), pi(.|2) = (1/2, 1/2)
REF_ROWS = [[0.0, 0.0], [0.0, math.log(4)], [math.log(3), 0.0]]
ROWS = [[0.0, math.log(3)], [math.log(2), 0.0], [0.0, 0.0]]
PI = [[1 / 4, 3 / 4], [2 / 3, 1 / 3], [1 / 2, 1 / 2]]
PI_REF = [[1 / 2, 1 / 2], [1 / 5, 4 / 5], [3 / 4, 1 / 4]]
# Sequence A: three steps at inputs 0, 1, 2 (actions 0, 1, 0); sequence B: two steps (inputs 1, 0; actions 1, 1)
DATA = ([[0, 1, 2], [1, 0, 0]], [[0, 1, 0], [1, 1, 0]], [[True, True, True], [True, True, False]])


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
def test_the_loss_is_the_authors_formula(kl: str, average: str, step_batch, moved_rule, hand_average) -> None:
    rule, policy = moved_rule(f'asft(kl="{kl}", average="{average}")', REF_ROWS, ROWS)
    loss, metrics = rule.loss(policy, step_batch(*DATA), 0)
    tokens = hand_tokens(kl, 0.1)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(hand_average(tokens, average), rel=1e-6)
    # the parts it logs: DFT's term and the KL alone
    dft = hand_tokens(kl, 0.0)
    kl_only = [[(a - b) / 0.1 for a, b in zip(x, y)] for x, y in zip(tokens, dft)]
    assert metrics["kl"].item() == pytest.approx(hand_average(kl_only, average), rel=1e-5)


def test_the_two_kl_forms_differ_and_kl_coef_scales_the_anchor(step_batch, moved_rule) -> None:
    full, policy = moved_rule("asft", REF_ROWS, ROWS)
    token, _ = moved_rule('asft(kl="token")', REF_ROWS, ROWS)
    data = step_batch(*DATA)
    assert abs(full.loss(policy, data, 0)[0].item() - token.loss(policy, data, 0)[0].item()) > 1e-3
    none, _ = moved_rule("asft(kl_coef=0.0)", REF_ROWS, ROWS)
    dft = make_rule("dft").loss(policy, data, 0)[0]
    torch.testing.assert_close(none.loss(policy, data, 0)[0], dft)


@pytest.mark.parametrize("kl", ["full", "token"])
def test_the_gradient_adds_the_anchors_pull_to_dfts(kl: str, step_batch, moved_rule) -> None:
    """One token, action 1 at input 0: DFT's part is ``-p (onehot - pi)``; the full KL(pi_ref || pi) adds
    ``coef (pi - pi_ref)`` on the position's logits, the token estimator ``coef (1 - p_ref / p) (onehot - pi)``."""
    rule, policy = moved_rule(f'asft(kl="{kl}")', REF_ROWS, ROWS)
    data = step_batch([[0]], [[1]], [[True]])
    loss, _ = rule.loss(policy, data, 0)
    (grad,) = torch.autograd.grad(loss.sum(), [policy.logits])
    pi, ref, onehot = torch.tensor(PI[0]), torch.tensor(PI_REF[0]), torch.tensor([0.0, 1.0])
    expected = -(3 / 4) * (onehot - pi)
    expected += 0.1 * ((pi - ref) if kl == "full" else (1 - (1 / 2) / (3 / 4)) * (onehot - pi))
    torch.testing.assert_close(grad[0, 0], expected)
    assert grad[0, 1:].abs().max() == 0


@pytest.mark.parametrize("kl", ["full", "token"])
def test_at_the_stages_start_asft_is_dft_in_loss_and_gradient(kl: str, rule_at_start, grads) -> None:
    """The reference is the policy as the stage started: both KL forms and their gradients are 0 there."""
    rule, policy, data = rule_at_start("asft", kl=kl)
    loss, metrics = rule.loss(policy, data, 0)
    dft = make_rule("dft").loss(policy, data, 0)[0]
    torch.testing.assert_close(loss, dft)
    assert metrics["kl"].abs().max() < 1e-6
    for a, b in zip(grads(policy, loss), grads(policy, dft)):
        torch.testing.assert_close(a, b)


def test_a_seed_trains_the_same_alone_and_beside_other_seeds(seed_independent) -> None:
    seed_independent("sft+asft")


@pytest.mark.parametrize("kind", ["tabular", "mlp", "gru"])
def test_every_grid_policy_trains(kind: str, grid_run) -> None:
    result = grid_run(kind, 'sft+asft(kl="token")', steps=4)
    assert result.history["loss"].shape == (4, 2)


class PassEveryStep(ASFT):
    """ASFT without the token KL's reference log-probabilities computed in ``prepare``: the reference reads every
    step's batch by a forward pass of its own."""

    def prepare(self, policy, data):
        return data


def test_the_token_kls_reference_computed_once_trains_as_a_reference_pass_every_step(token_run) -> None:
    """Minibatches of 8 of the 40 demonstrations, each in two micro-batches, two TinyGPT seeds: every logged number
    and every weight after 6 steps as with the reference's forward pass at every step (float round-off apart)."""
    runs = [token_run("tiny-gpt", rule(ASFTConfig(kl="token")), steps=6, batch_size=8, grad_accum=2, lr=3e-2)
            for rule in (ASFT, PassEveryStep)]  # fmt: skip
    cached, uncached = runs
    assert (cached.history["kl"][1:] > 0).all()  # the policy has moved from its anchor
    assert cached.compute["tokens"] == 2 / 3 * uncached.compute["tokens"]  # no reference pass at the steps
    for key in uncached.history:
        torch.testing.assert_close(cached.history[key], uncached.history[key])
    for a, b in zip(cached.policy.parameters(), uncached.policy.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["tiny-gpt", "gru", "hf"])
def test_every_token_policy_trains(kind: str, token_run) -> None:
    result = token_run(kind, "asft", steps=2, batch_size=8)
    assert result.history["kl"].shape == (2, 2)
    assert (result.history["kl"][0] == 0).all() and (result.history["kl"][1] > 0).all()  # anchored at the start


@pytest.mark.parametrize("kl", ["full", "token"])
def test_a_run_lowers_the_loss_and_raises_success_on_the_4x4_map(kl: str, learns_on_4x4) -> None:
    # the anchor holds it nearer the uniform start: success above 0.8
    learns_on_4x4(f'asft(kl="{kl}")', lowers="nll", success_above=0.8)


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"kl": "reverse"}, "kl='reverse' is not supported"), ({"kl_coef": -0.1}, r"kl_coef=-0\.1 is out of range")],
)
def test_bad_settings_are_one_clear_error(settings: dict, message: str, refused) -> None:
    refused("asft", settings, message)
