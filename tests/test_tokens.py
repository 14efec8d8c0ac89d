"""Token world: tasks, JSONL loading, tokenizer, the MDP, batches, sampling, and IFT on TinyGPT batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iftgym.loop import TrainConfig, train
from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.rules import make_rule
from iftgym.rules.common import sft_loss_from_logps, step_logps
from iftgym.rules.ift import IFT, IFTConfig, propagation_weights
from iftgym.world import World, seed_generators
from iftgym.worlds.tokens import BOS, EOS, PAD, CharTokenizer, TokenWorld
from iftgym.worlds.tokens.jsonl import JSONLTask, load_jsonl
from iftgym.worlds.tokens.tasks import (
    AdditionTask,
    Example,
    FrozenLakeTextTask,
    SortTask,
    make_task,
    map_prompt,
    walk_reaches_goal,
)


@pytest.fixture(scope="module")
def world() -> TokenWorld:
    return TokenWorld(AdditionTask(digits=2, n_train=40, n_test=10, seed=1))


@pytest.fixture(scope="module")
def reverse() -> TokenWorld:
    """User data with prompts of different lengths."""
    return TokenWorld(JSONLTask("reverse_preference"))


def tiny(world: TokenWorld, seeds=2) -> TinyGPT:
    return TinyGPT(world.n_ids, world.block_size, n_layer=1, n_head=2, n_embd=16, seeds=seeds, device="cpu")


# ---- tasks ------------------------------------------------------------------------------------------------------
def test_addition_answers_are_reversed_sums_and_rejected_ones_err_early():
    task = AdditionTask(digits=3, n_train=50, n_test=20, seed=0)
    assert not {ex.prompt for ex in task.train} & {ex.prompt for ex in task.test}
    for ex in task.train:
        a, b = map(int, ex.prompt.rstrip("=").split("+"))
        assert ex.completion == str(a + b).zfill(4)[::-1]
        assert task.reward(ex.prompt, ex.completion) == 1.0
        assert task.reward(ex.prompt, ex.rejected) == 0.0
        wrong = [i for i, (x, y) in enumerate(zip(ex.completion, ex.rejected)) if x != y]
        assert len(wrong) == 1 and wrong[0] < 2


def test_sort_task():
    task = SortTask(length=4, n_train=30, n_test=5)
    ex = task.train[0]
    assert ex.completion == "".join(sorted(ex.prompt[:-1])) and ex.prompt.endswith("=")
    assert task.reward(ex.prompt, ex.completion) == 1.0 and task.reward(ex.prompt, ex.rejected) == 0.0


def test_frozen_lake_text_task_solves_maps_and_holds_out_unseen_ones():
    task = FrozenLakeTextTask(size=4, n_train=30, n_test=10, seed=0)
    assert not {ex.prompt for ex in task.train} & {ex.prompt for ex in task.test}
    for ex in task.train + task.test:
        assert task.reward(ex.prompt, ex.completion) == 1.0  # the solver's route reaches G
        # the second route or a noisy expert: longer, or failing
        assert len(ex.rejected) > len(ex.completion) or task.reward(ex.prompt, ex.rejected) == 0.0
    assert set(task.alphabet) == set("SFHG|:LDRU")


def test_walk_semantics():
    rows = ("SFH", "FFF", "HFG")
    assert map_prompt(rows) == "SFH|FFF|HFG:"
    assert walk_reaches_goal(rows, "DRDR") and walk_reaches_goal(rows, "RDRD")
    assert walk_reaches_goal(rows, "LUDRDR")  # bumping into walls leaves the position unchanged
    assert not walk_reaches_goal(rows, "RR")  # into the hole
    assert not walk_reaches_goal(rows, "DR")  # stops short of G
    assert not walk_reaches_goal(rows, "DXRDR")  # not a move


def test_make_task_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match=r"unknown task 'chess'.*addition"):
        make_task("chess")
    with pytest.raises(ValueError, match=r"task 'sort'.*digits"):
        make_task("sort", digits=3)
    # mistyped options (as --task-arg passes them) fail clearly, not with a TypeError deep inside
    with pytest.raises(ValueError, match=r"task 'addition': digits='two' is str: expected an integer"):
        make_task("addition", digits="two")
    with pytest.raises(ValueError, match=r"digits=2.0 is float: expected an integer"):
        make_task("addition", digits=2.0)
    with pytest.raises(ValueError, match=r"p_hole=None is NoneType: expected a number"):
        make_task("frozen-lake", p_hole=None)
    assert make_task("sort", length=np.int64(2), n_train=3, n_test=1).train[0].prompt.endswith("=")


# ---- JSONL ------------------------------------------------------------------------------------------------------
def test_shipped_jsonl_samples_load_in_both_trl_formats():
    sft = JSONLTask("reverse")
    assert sft.train[0].rejected is None and sft.test is sft.train
    pref = JSONLTask("reverse_preference")
    assert all(ex.rejected is not None for ex in pref.train)
    assert pref.reward(pref.train[0].prompt, pref.train[0].completion) == 1.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: invalid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        ('{"completion": "x"}', "line 2: missing key 'prompt'"),
        ('{"prompt": "a", "chosen": "b"}', "line 2: expected key 'completion', or both 'chosen' and 'rejected'"),
        ('{"prompt": [{"role": "user", "content": "a"}], "completion": "b"}', "line 2: .*conversational"),
        ('{"prompt": "a", "completion": 3}', "line 2: field 'completion' is int"),
        ('{"prompt": "a", "completion": "b", "label": false}', "line 2: .*'label'.*unpaired preference"),
        ('{"prompt": "a", "completion": "b", "rejected": "c"}', "line 2: key 'completion' cannot be mixed"),
    ],
)
def test_malformed_jsonl_lines_are_named(tmp_path, line, message):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        load_jsonl(path)


def test_jsonl_lines_are_split_on_newlines_only(tmp_path):
    path = tmp_path / "data.jsonl"
    records = [{"prompt": "a\u2028b", "completion": "c\x85d"}, {"prompt": "e", "completion": "f"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + "{bad\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: invalid JSON"):  # U+2028 and U+0085 do not end a line
        load_jsonl(path)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in records), encoding="utf-8")
    assert load_jsonl(path)[0] == JSONLTask(path).train[0] == Example("a\u2028b", "c\x85d")


def test_jsonl_file_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read data file"):
        load_jsonl(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="has no examples"):
        load_jsonl(tmp_path / "empty.jsonl")


# ---- tokenizer and MDP ----------------------------------------------------------------------------------------
def test_tokenizer_round_trip_and_specials():
    tok = CharTokenizer("ba+")
    assert tok.itos[:3] == ["<pad>", "<bos>", "<eos>"] and tok.vocab_size == 6
    ids = tok.encode("ab+")
    assert tok.text(ids) == "ab+" and tok.decode([*ids, EOS]) == "ab+<eos>"
    assert tok.text([*ids, PAD]) is None
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        tok.encode("az")


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


# ---- generation and sampling ------------------------------------------------------------------------------------
def test_batched_greedy_generation_matches_one_prompt_at_a_time(reverse):
    policy = tiny(reverse)
    prompts = [ex.prompt for ex in reverse.task.train[:5]]  # different lengths share one right-padded batch
    together = reverse.complete(policy, prompts)
    for b, prompt in enumerate(prompts):
        start = len(reverse.prompt_ids(prompt)) - 1
        for k in range(policy.n_seeds):
            answer = together[k][b]
            assert answer[-1] == EOS or len(answer) == reverse.max_answer_tokens
            with torch.no_grad():  # this prompt alone, no padding
                logits = policy(torch.tensor([[*reverse.prompt_ids(prompt), *answer]]))[k, 0]
            # every token is the argmax given the prompt and the tokens before it
            assert logits[start : start + len(answer)].argmax(-1).tolist() == list(answer)


def test_sample_batch_shape_rewards_and_determinism(world):
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


def test_score_counts_exact_matches(world):
    policy = tiny(world, seeds=2)
    scores = world.score(policy, "test")
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


# ---- every rule on TinyGPT through the one training loop ---------------------------------------------------------
@pytest.mark.parametrize(
    ("algo", "overrides"),
    [("sft", {}), ("ift", {}), ("dpo", {}), ("dpo-online", {"n_samples": 4}), ("orpo", {}),
     ("ppo", {"kl_coef": 0.05, "n_episodes": 4, "ent_coef": 0.01}), ("reinforce", {"kl_coef": 0.05, "n_episodes": 4})],
)  # fmt: skip
# (PPO's entropy bonus moves the policy even when no sampled answer earns a reward in the two steps)
def test_every_rule_trains_tiny_gpt(world, algo, overrides):
    rule = make_rule(algo, **overrides)
    if rule.data == "env":  # an untrained model never earns the exact-match reward: learn from per-token rewards
        world = TokenWorld(world.task, reward="token")
    policy = tiny(world)
    before = [p.detach().clone() for p in policy.parameters()]
    result = train(policy, rule, world, world.training_data(),
                   TrainConfig(steps=2, lr=1e-3, batch_size=8))  # fmt: skip
    assert np.isfinite(result.history["loss"]).all() and result.history["loss"].shape == (2, 2)
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.parameters()))


def test_sft_loss_falls(world):
    result = train(tiny(world), "sft", world, world.training_data(), TrainConfig(steps=30, lr=3e-3))
    assert (result.history["loss"][-1] < result.history["loss"][0] - 0.3).all()


# ---- IFT on tokens: exactly the reference's mixing ----------------------------------------------------------------
def set_up_ift(policy: TinyGPT, world: TokenWorld, **config) -> IFT:
    """An IFT rule set up on ``policy`` as the training loop does it."""
    rule = IFT(IFTConfig(**config))
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    return rule


def test_ift_mixes_predictions_at_answer_positions_only(reverse):
    policy = tiny(reverse)
    examples = [("reverse apple:", "elppa"), ("reverse cactus:", "sutcac")]
    batch = reverse.step_batch(examples)
    rule = set_up_ift(policy, reverse, lam=0.3)
    with torch.no_grad():
        policy.wte.add_(0.5)  # an optimiser step the frozen copy has not seen yet
        mixed = rule.mixed_inputs(policy, batch, 0.3)
        frozen = policy.wte.detach() - 0.5
        truth = frozen[torch.arange(policy.n_seeds)[:, None, None], batch.ids]  # every input reads the frozen copy
        predicted = policy(truth).argmax(-1)  # yhat_{t+1} from the ground-truth prefix up to t
    expected = truth.clone()
    for b, (prompt, answer) in enumerate(examples):
        # positions whose input is an answer token: after <bos> + prompt, before the final <eos>
        for t in range(1 + len(prompt), 1 + len(prompt) + len(answer)):
            for k in range(policy.n_seeds):
                expected[k, b, t] = 0.7 * truth[k, b, t] + 0.3 * frozen[k, predicted[k, b, t - 1]]
    torch.testing.assert_close(mixed, expected)
    rule.after_step(policy)  # re-synced: the predictions now use the updated table
    assert torch.equal(rule.frozen_table, policy.embedding_table().detach())


def test_ift_with_lambda_0_and_gamma_0_is_exactly_sft_on_tiny_gpt(reverse):
    policy = tiny(reverse)
    batch = reverse.training_data().demos
    rule = set_up_ift(policy, reverse, lam=0.0, gamma=0.0)
    ift_loss, _ = rule.loss(policy, batch, 0)
    sft_loss = sft_loss_from_logps(step_logps(policy, batch), batch.mask)
    assert torch.equal(ift_loss, sft_loss)
    # Same gradient for every weight but the token embedding, which IFT reads from its frozen copy only.
    params = [p for name, p in policy.named_parameters() if name != "wte"]
    ift_grads = torch.autograd.grad(ift_loss.sum(), [policy.wte, *params], allow_unused=True)
    sft_grads = torch.autograd.grad(sft_loss.sum(), params)
    assert ift_grads[0] is None
    assert all(torch.equal(a, b) for a, b in zip(ift_grads[1:], sft_grads))


def test_ift_live_embedding_ablation_matches_sft_in_every_gradient(reverse):
    policy = tiny(reverse)
    batch = reverse.training_data().demos
    rule = set_up_ift(policy, reverse, lam=0.0, gamma=0.0, embedding="live")
    ift_loss, _ = rule.loss(policy, batch, 0)
    sft_loss = sft_loss_from_logps(step_logps(policy, batch), batch.mask)
    assert torch.equal(ift_loss, sft_loss)
    params = list(policy.parameters())
    ift_grads = torch.autograd.grad(ift_loss.sum(), params)
    sft_grads = torch.autograd.grad(sft_loss.sum(), params)
    assert all(torch.equal(a, b) for a, b in zip(ift_grads, sft_grads))
    with pytest.raises(ValueError, match=r"embedding='tied'.*'frozen', 'live'"):
        IFTConfig(embedding="tied")


def test_ift_loss_uses_propagation_weights_with_their_gradient(reverse):
    policy = tiny(reverse)
    batch = reverse.training_data().demos
    rule = set_up_ift(policy, reverse, lam=0.2, gamma=0.95)
    loss, _ = rule.loss(policy, batch, 0)
    logps = batch.logps(policy(rule.mixed_inputs(policy, batch, 0.2)))
    n = batch.mask.sum(-1)
    weights = propagation_weights(logps, batch.mask, gamma=0.95)
    torch.testing.assert_close(loss, ((-logps * weights).sum(-1) / n).mean(-1), rtol=0, atol=0)
    # weights are not detached: the gradient differs from the one with constant weights
    params = [p for name, p in policy.named_parameters() if name != "wte"]  # wte: read from the frozen copy
    grad = torch.autograd.grad(loss.sum(), params, retain_graph=True)
    detached = ((-logps * weights.detach()).sum(-1) / n).mean(-1)
    grad_detached = torch.autograd.grad(detached.sum(), params)
    assert any(not torch.allclose(a, b) for a, b in zip(grad, grad_detached))
