"""The token world: the World contract, rewards, batches and pairs, sampling and scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iftgym.rules import make_rule
from iftgym.world import World, seed_generators
from iftgym.worlds.tokens import BOS, EOS, PAD, TokenWorld
from iftgym.worlds.tokens.jsonl import JSONLTask


# -- the MDP --------------------------------------------------------------------------------------------------
def test_world_implements_the_mdp_protocol(world):
    assert isinstance(world, World)
    prompt = world.prompt_ids("12+34=")
    assert prompt[0] == BOS and world.input_id((prompt, ())) == prompt[-1]
    start = world.start_distribution()
    assert np.isclose(sum(start.values()), 1.0) and len(start) == 40
    state = (prompt, ())
    (nxt, p), *rest = world.transition(state, 5).items()
    assert not rest and p == 1.0 and nxt == (prompt, (5,)) and world.input_id(nxt) == 5
    probs = world.successor_probs(torch.tensor([[3, 4]]), torch.tensor([[5, 6]]))
    assert torch.equal(probs, torch.nn.functional.one_hot(torch.tensor([[5, 6]]), world.n_ids).float())
    assert world.is_terminal((prompt, (5, EOS))) and not world.is_terminal((prompt, (5,)))
    assert world.is_terminal((prompt, (5,) * world.max_answer_tokens))  # the length limit


def test_end_and_token_rewards(world):
    ex = world.task.train[0]
    prompt, answer = world.prompt_ids(ex.prompt), world.answer_ids(ex.completion)
    assert world.answer_rewards(prompt, answer) == [0.0] * (len(answer) - 1) + [1.0]
    assert world.answer_rewards(prompt, world.answer_ids(ex.rejected))[-1] == 0.0
    truncated = answer[:-1] + answer[:1]  # no <eos>: cut off by the length limit
    assert world.answer_rewards(prompt, truncated)[-1] == 0.0
    dense = TokenWorld(world.task, reward="token")
    assert np.isclose(sum(dense.answer_rewards(prompt, answer)), 1.0)
    early_mistake = dense.answer_rewards(prompt, world.answer_ids(ex.rejected))
    first = next(i for i, (x, y) in enumerate(zip(ex.completion, ex.rejected)) if x != y)
    assert all(r == 0 for r in early_mistake[first:]) and sum(early_mistake) < 1
    with pytest.raises(ValueError, match="reward='dense'"):
        TokenWorld(world.task, reward="dense")


# -- batches --------------------------------------------------------------------------------------------------
def test_step_batch_layout(reverse):
    examples = [("reverse apple:", "elppa"), ("reverse cactus:", "sutcac")]
    batch = reverse.step_batch(examples)
    tok = reverse.tokenizer
    for b, (prompt, answer) in enumerate(examples):
        sequence = [BOS, *tok.encode(prompt + answer), EOS]
        n = len(sequence) - 1
        assert batch.ids[b, :n].tolist() == sequence[:-1] and batch.actions[b, :n].tolist() == sequence[1:]
        # the mask is on the actions that are answer tokens, <eos> included; nowhere else
        expected_mask = [len(prompt) <= t < n for t in range(batch.ids.shape[1])]
        assert batch.mask[b].tolist() == expected_mask
        assert batch.rewards[b].tolist() == [0.0] * (n - 1) + [1.0] + [0.0] * (batch.ids.shape[1] - n)
        assert (batch.ids[b, n:] == PAD).all()


def test_pairs_share_one_length(reverse):
    pairs = reverse.training_data().pairs
    assert pairs.chosen.ids.shape == pairs.rejected.ids.shape
    assert (pairs.rejected.rewards.sum(-1) == 0).all() and (pairs.chosen.rewards.sum(-1) == 1).all()


def test_prompt_completion_data_has_no_pairs():
    data = TokenWorld(JSONLTask("reverse")).training_data()
    assert data.pairs is None and data.demos.ids.shape[0] == 59
    with pytest.raises(ValueError, match="'dpo' trains on preference pairs"):
        data.for_kind(make_rule("dpo").data, "dpo")


# -- sampling and scoring -------------------------------------------------------------------------------------
def test_sample_batch_shape_rewards_and_determinism(world, tiny):
    policy = tiny(world, seeds=3)
    batch = world.sample(policy, 6, seed_generators(0, policy.seeds))
    assert batch.ids.shape[:2] == (3, 6) and batch.actions.shape == batch.ids.shape
    again = world.sample(policy, 6, seed_generators(0, policy.seeds))
    assert all(torch.equal(x, y) for x, y in zip(vars(batch).values(), vars(again).values()))
    prompt_len = len(world.prompt_ids(world.task.train[0].prompt))  # fixed-width prompts
    assert not batch.mask[..., : prompt_len - 1].any() and batch.mask[..., prompt_len - 1].all()
    for k in range(3):
        for b in range(6):
            steps = batch.mask[k, b].nonzero().squeeze(-1)
            prompt = tuple(batch.ids[k, b, :prompt_len].tolist())
            answer = tuple(batch.actions[k, b, steps].tolist())
            assert batch.rewards[k, b].sum() == world.final_reward(prompt, answer)
            assert answer[-1] == EOS or len(answer) == world.max_answer_tokens


def test_sample_like_answers_each_demonstration_s_own_prompt(reverse, tiny):
    examples = [("reverse apple:", "elppa"), ("reverse cactus:", "sutcac")]
    demos = reverse.step_batch(examples)
    policy = tiny(reverse, seeds=2)
    samples = reverse.sample_like(policy, demos, 3, seed_generators(0, policy.seeds))
    assert samples.ids.shape[:2] == (2, 6)
    for k in range(2):
        for b, (prompt, _) in enumerate(examples):
            ids = reverse.prompt_ids(prompt)
            for episode in range(3 * b, 3 * b + 3):  # the episodes of demonstration b start from its prompt
                assert tuple(samples.ids[k, episode, : len(ids)].tolist()) == ids
                assert samples.mask[k, episode].int().argmax() == len(ids) - 1


def test_online_dpo_contrasts_each_target_with_samples_of_its_own_prompt(reverse, tiny):
    demos = reverse.step_batch([("reverse apple:", "elppa"), ("reverse cactus:", "sutcac")])
    policy = tiny(reverse, seeds=2)
    rule = make_rule("dpo-online", n_samples=2)
    rule.setup(policy, reverse, seed_generators(0, policy.seeds))
    loss, metrics = rule.loss(policy, demos, 0)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    rejected = reverse.sample_like(policy, demos, 2, seed_generators(0, policy.seeds))  # what the rule drew
    from iftgym.rules.common import sequence_logps

    with torch.no_grad():
        chosen = sequence_logps(policy, demos).repeat_interleave(2, dim=-1)  # target b, twice
        torch.testing.assert_close(metrics["logps/rejected"], sequence_logps(policy, rejected).mean(-1))
        torch.testing.assert_close(metrics["logps/chosen"], chosen.mean(-1))


def test_score_counts_exact_matches(world, tiny):
    policy = tiny(world, seeds=2)
    scores = world.score(policy, "test")
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


# -- bad arguments ----------------------------------------------------------------------------------------------------
class _Empty(JSONLTask):
    """A user task whose splits or characters are missing."""

    name = "empty"

    def __init__(self, train, test):
        self.train, self.test = train, test


def test_token_world_refuses_what_is_no_task():
    from iftgym.worlds.tokens.tasks import Example

    with pytest.raises(ValueError, match=r"^task='addition' is str: expected an iftgym Task"):
        TokenWorld("addition")
    with pytest.raises(ValueError, match=r"^reward=\['end'\] is not supported: expected one of end, token$"):
        TokenWorld(JSONLTask("reverse"), reward=["end"])
    with pytest.raises(ValueError, match=r"^task 'empty' has no test examples: expected at least one in each split$"):
        TokenWorld(_Empty([Example("a", "b")], []))
    with pytest.raises(ValueError, match=r"^task 'empty' uses no characters: expected answers of at least one"):
        TokenWorld(_Empty([Example("", "")], [Example("", "")]))


def test_token_world_batches_are_checked_before_they_are_allocated(reverse, tiny, monkeypatch):
    import iftgym.validate

    with pytest.raises(ValueError, match=r"^no sequences to pack: expected at least one"):
        reverse.step_batch([])
    with pytest.raises(ValueError, match=r"^chunk=0 is out of range: expected at least 1$"):
        reverse.score(tiny(reverse), chunk=0)
    with pytest.raises(
        ValueError, match=r"^prompts=\[\] is not supported: expected a non-empty list of prompt strings$"
    ):
        reverse.complete(tiny(reverse), [])
    monkeypatch.setattr(iftgym.validate, "memory_bytes", lambda: 1000)  # a machine with 1000 bytes of memory
    with pytest.raises(ValueError, match=r"^a batch of 2 sequences of \d+ steps needs about .* use fewer or shorter"):
        reverse.step_batch([(ex.prompt, ex.completion) for ex in reverse.task.train[:2]])


# -- conversations, and a Hugging Face tokenizer --------------------------------------------------------------------
def chat_world(tokenizer=None) -> TokenWorld:
    return TokenWorld(JSONLTask("chat"), tokenizer=tokenizer)


def hf_chat_world() -> TokenWorld:
    pytest.importorskip("transformers")
    from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer

    task = JSONLTask("chat")
    return TokenWorld(task, tokenizer=character_tokenizer(task.alphabet))


@pytest.mark.parametrize("make", [chat_world, hf_chat_world], ids=["characters", "hugging-face"])
def test_a_conversation_trains_on_every_assistant_turn_and_nothing_else(make) -> None:
    world = make()
    tok = world.tokenizer
    two_turns = next(ex for ex in world.task.train if len(ex.prompt) == 3)  # user, assistant, user -> assistant
    batch = world.step_batch([(two_turns.prompt, two_turns.completion)], history=[True])
    targets = batch.actions[0][batch.mask[0]].tolist()
    first = two_turns.prompt[1].content
    assert targets == [*tok.encode(first), tok.eos_id, *tok.encode(two_turns.completion), tok.eos_id]
    assert world.training_data().demos.mask.sum() > world.step_batch(
        [(ex.prompt, ex.completion) for ex in world.task.train]).mask.sum()  # fmt: skip
    prompt = world.prompt_ids(two_turns.prompt)
    answer = world.answer_ids(two_turns.completion, two_turns.prompt)
    assert world.final_reward(prompt, answer) == 1.0 and world.prompt_of(prompt) == two_turns.prompt
    assert world.final_reward(prompt, (*tok.encode("a"), tok.eos_id)) == 0.0


def test_online_samples_answer_the_last_turn_of_a_conversation(tiny) -> None:
    world = chat_world()
    examples = [ex for ex in world.task.train if len(ex.prompt) == 3][:2]
    demos = world.step_batch([(ex.prompt, ex.completion) for ex in examples], history=[True, True])
    policy = tiny(world, seeds=1)
    samples = world.sample_like(policy, demos, 2, seed_generators(0, policy.seeds))
    for b, ex in enumerate(examples):
        prompt = world.prompt_ids(ex.prompt)
        for row in (2 * b, 2 * b + 1):  # the sample continues the whole conversation, not its first turn
            assert tuple(samples.ids[0, row, : len(prompt)].tolist()) == prompt
            assert not samples.mask[0, row, : len(prompt) - 1].any()


def test_a_model_vocabulary_larger_than_the_tokenizer_is_accepted_and_a_smaller_refused() -> None:
    task = JSONLTask("reverse")
    wide = TokenWorld(task, vocab_size=64)
    assert wide.n_ids == 64
    prompt = wide.prompt_ids(task.train[0].prompt)
    assert wide.final_reward(prompt, (40, EOS)) == 0.0  # an id the tokenizer cannot read is no answer
    with pytest.raises(ValueError, match="vocab_size"):
        TokenWorld(task, vocab_size=3)
    with pytest.raises(ValueError, match="expected an iftgym tokenizer"):
        TokenWorld(task, tokenizer="chars")
