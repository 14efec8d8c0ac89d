"""IFT on multi-turn chat data: the reference code mixes every supervised position, the <eos> that closes an earlier
assistant turn included; a 2-turn conversation's loss against a direct transcription of the reference's step (a
Hugging Face-style sequence with labels -100 off the assistant turns), and the previous behaviour as an option."""

from __future__ import annotations

import pytest
import torch

from iftgym import FrozenLakeMDP, StepBatch
from iftgym.rules.ift import IFT, IFTConfig, mixed_steps, propagation_weights
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.jsonl import JSONLTask

LAM = 0.3


def two_turns(world: TokenWorld):
    example = next(ex for ex in world.task.train if len(ex.prompt) == 3)  # user, assistant, user -> assistant
    return example, world.step_batch([(example.prompt, example.completion)], history=[True])


def reference_loss(policy, world: TokenWorld, example, lam: float, gamma: float, mix_eos: bool = True):
    """The reference's IFT step written out on the whole sequence ``input_ids`` (answer's <eos> included, as a
    Hugging Face batch holds it) and ``labels`` (the token where it is an assistant token, else -100):
    1. ``embeds = E[input_ids]`` from the frozen table; 2. without gradient, ``preds = argmax model(embeds)``;
    3. ``embeds[i] = (1 - lam) embeds[i] + lam E[preds[i - 1]]`` at every i >= 1 with ``labels[i] != -100``;
    4. ``l_i = -log softmax(model(embeds)[i])[input_ids[i + 1]]`` where ``labels[i + 1] != -100``; 5. the loss
    ``sum_i l_i w_i / n`` with relation propagation's weights. ``mix_eos=False`` leaves the <eos> that closes the
    first assistant turn unmixed (iftgym's former behaviour)."""
    prompt_ids, assistant = world._rendered(example.prompt)
    answer_ids = world.answer_ids(example.completion, example.prompt)
    input_ids = [*prompt_ids, *answer_ids]
    supervised = [*assistant, *([True] * len(answer_ids))]
    labels = [token if s else -100 for token, s in zip(input_ids, supervised)]
    table = policy.embedding_table().detach()  # the frozen copy (equal to the live table before any step)
    losses = []
    for k in range(policy.n_seeds):
        embeds = table[k, input_ids]  # (L, D)
        with torch.no_grad():
            preds = policy(torch.stack([embeds] * policy.n_seeds)[:, None])[k, 0].argmax(-1)
        mixed = embeds.clone()
        for i in range(1, len(input_ids)):
            closing_eos = input_ids[i] == world.eos and i + 1 < len(input_ids) and labels[i + 1] == -100
            if labels[i] != -100 and (mix_eos or not closing_eos):
                mixed[i] = (1 - lam) * embeds[i] + lam * table[k, preds[i - 1]]
        logits = policy(torch.stack([mixed] * policy.n_seeds)[:, None])[k, 0]
        log_probs = torch.log_softmax(logits.float(), -1)
        step = [(i, -log_probs[i, input_ids[i + 1]]) for i in range(len(input_ids) - 1) if labels[i + 1] != -100]
        token_losses = torch.zeros(len(input_ids) - 1)
        target = torch.zeros(len(input_ids) - 1, dtype=torch.bool)
        for i, loss in step:
            token_losses[i], target[i] = loss, True
        weights = propagation_weights(-token_losses, target, gamma)
        losses.append((token_losses * weights).sum() / target.sum())
    return torch.stack(losses)


@pytest.mark.parametrize("gamma", [0.0, 0.95])
def test_ift_on_a_two_turn_conversation_is_the_reference_formula(tiny, gamma: float) -> None:
    world = TokenWorld(JSONLTask("chat"))
    example, batch = two_turns(world)
    policy = tiny(world)
    rule = IFT(IFTConfig(lam=LAM, gamma=gamma))
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    loss, _ = rule.loss(policy, batch, 0)
    expected = reference_loss(policy, world, example, LAM, gamma)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # the earlier turn's <eos> is mixed: leaving it unmixed (iftgym's former behaviour) is another loss ...
    runs = IFT(IFTConfig(lam=LAM, gamma=gamma, mix_at="runs"))
    runs.setup(policy, world, seed_generators(0, policy.seeds))
    former, _ = runs.loss(policy, batch, 0)
    torch.testing.assert_close(former, reference_loss(policy, world, example, LAM, gamma, mix_eos=False),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert (former - loss).abs().max() > 1e-6
    # ... and the gradients differ too
    params = [p for name, p in policy.named_parameters() if name != "wte"]
    grads = torch.autograd.grad(loss.sum(), params)
    former_grads = torch.autograd.grad(former.sum(), params)
    assert any(not torch.allclose(a, b) for a, b in zip(grads, former_grads))


def test_the_earlier_turns_eos_is_the_only_position_the_options_disagree_on(tiny) -> None:
    world = TokenWorld(JSONLTask("chat"))
    _, batch = two_turns(world)
    mask = batch.mask
    targets, runs = mixed_steps(mask, "targets"), mixed_steps(mask, "runs")
    reached = torch.zeros_like(mask)
    reached[..., 1:] = mask[..., :-1]  # inputs reached by a target action
    differ = ((reached & targets) != (reached & runs)).nonzero()[:, -1].tolist()
    eos_inputs = [t for t in range(1, mask.shape[-1]) if batch.ids[0, t] == world.eos and mask[0, t - 1]]
    assert differ == eos_inputs and len(differ) == 1  # the first turn's closing <eos>


@pytest.mark.parametrize("slippery", [False, True])
def test_the_options_agree_on_single_answer_batches(slippery: bool, reverse, tiny) -> None:
    """The grid's demonstrations (one run of targets from the start) and prompt-answer token batches: identical."""
    grid = FrozenLakeMDP.from_map("paper", slippery=slippery, success_rate=0.6)
    demos = StepBatch.from_trajectories(grid, [grid.optimal_demonstration(rng=seed) for seed in range(3)])
    tokens = reverse.training_data().demos
    for mask in (demos.mask, tokens.mask):
        reached = torch.zeros_like(mask)
        reached[..., 1:] = mask[..., :-1]
        assert torch.equal(reached & mixed_steps(mask, "targets"), reached & mixed_steps(mask, "runs"))
    policy = tiny(reverse)
    losses = []
    for mix_at in ("targets", "runs"):
        rule = IFT(IFTConfig(mix_at=mix_at))
        rule.setup(policy, reverse, seed_generators(0, policy.seeds))
        losses.append(rule.loss(policy, tokens, 0)[0])
    assert torch.equal(*losses)


def test_a_bad_mix_at_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="mix_at='all' is not supported"):
        IFTConfig(mix_at="all")
