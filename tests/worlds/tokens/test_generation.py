"""Decoding from sequence policies: batched greedy answers equal one prompt at a time, sampling never draws an
impossible token."""

from __future__ import annotations

import pytest
import torch

from iftgym.decoding import filter_logits, generate
from iftgym.policies.base import Policy
from iftgym.world import seed_generators
from iftgym.worlds.tokens import EOS, PAD


def test_batched_greedy_generation_matches_one_prompt_at_a_time(reverse, tiny):
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


class FixedLogits(Policy):
    """One seed whose next-token logits are always ``logits``."""

    markov = False

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__(1, len(logits))
        self.logits = logits

    def embedding_table(self) -> torch.Tensor:
        return torch.zeros(1, len(self.logits), 1)

    def logits_at(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(1, *ids.shape[-2:], len(self.logits))


@pytest.mark.parametrize("u", [0.0, 1.0 - 2**-24])  # the smallest and largest draws of torch.rand
def test_sampling_never_draws_a_token_of_probability_0(monkeypatch, u):
    inf = float("inf")
    policy = FixedLogits(torch.tensor([-inf, -inf, 0.0, 1.0, 2.0, -inf]))  # only ids 2, 3, 4 are possible
    monkeypatch.setattr(torch, "rand", lambda *shape, generator=None: torch.full(shape, u))
    tokens = generate(policy, torch.ones(3, 1, dtype=torch.long), torch.ones(3, dtype=torch.long), 1, greedy=False,
                      generators=[torch.Generator()])  # fmt: skip
    assert tokens.flatten().tolist() == [2 if u == 0 else 4] * 3


@pytest.mark.parametrize("greedy", [True, False])
def test_the_tiny_gpt_key_value_cache_decodes_as_full_recomputation(reverse, tiny, greedy) -> None:
    policy = tiny(reverse, seeds=3)
    with torch.no_grad():  # a confident random model: long answers that differ between seeds
        for parameter in policy.parameters():
            parameter.mul_(20)
    ids = [reverse.prompt_ids(ex.prompt) for ex in reverse.task.train[:5]]
    per_seed = torch.stack([torch.nn.functional.pad(torch.tensor(ids[(b + k) % 5]), (0, 20 - len(ids[(b + k) % 5])))
                            for k in range(3) for b in range(4)]).view(3, 4, 20)  # fmt: skip
    lengths = torch.tensor([[len(ids[(b + k) % 5]) for b in range(4)] for k in range(3)])
    runs = [generate(policy, per_seed, lengths, 6, greedy, generators=seed_generators(1, policy.seeds), cache=cache,
                     top_k=None if greedy else 4, top_p=1.0 if greedy else 0.9) for cache in (True, False)]  # fmt: skip
    assert torch.equal(runs[0], runs[1]) and (runs[0] != PAD).sum() > 12


def test_answers_are_ordinary_tensors_though_the_policy_runs_in_inference_mode(reverse, tiny) -> None:
    policy = tiny(reverse, seeds=2)
    seen = []
    decode = policy.decode

    def watched(*args, **kwargs):
        seen.append(torch.is_inference_mode_enabled())
        return decode(*args, **kwargs)

    policy.decode = watched
    prompts = torch.tensor([list(reverse.prompt_ids(ex.prompt)) for ex in reverse.task.train[:1]] * 3)
    answers = generate(policy, prompts, torch.full((3,), prompts.shape[1]), 4, greedy=False,
                       generators=seed_generators(0, policy.seeds))  # fmt: skip
    assert seen and all(seen) and not answers.is_inference()
    # what a caller may do with them: index a graph's tensor (saved for the backward pass), change them in place
    logits = policy.logits_at(answers[0])
    logits.gather(-1, answers[..., None]).sum().backward()
    answers[answers == PAD] = EOS


def test_top_k_and_top_p_keep_exactly_the_tokens_they_name() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda **kw: torch.isfinite(filter_logits(logits, **kw))[0].tolist()  # noqa: E731
    assert kept(top_k=2) == [True, True, False, False, False]
    assert kept(top_p=0.5) == [True, False, False, False, False]  # the first token alone holds 0.5
    assert kept(top_p=0.6) == [True, True, False, False, False]
    assert kept(top_p=0.86, top_k=2) == [True, True, False, False, False]
    assert kept(top_p=0.01) == [True, False, False, False, False]  # the most likely token always stays
    shuffled = logits[:, [3, 0, 4, 1, 2]]
    assert torch.isfinite(filter_logits(shuffled, top_p=0.6))[0].tolist() == [False, True, False, True, False]


def test_sampling_follows_the_filtered_distribution(reverse, tiny) -> None:
    policy = tiny(reverse, seeds=1)
    prompts = torch.tensor([list(reverse.prompt_ids(reverse.task.train[0].prompt))] * 400)
    lengths = torch.full((400,), prompts.shape[1])
    first = generate(policy, prompts, lengths, 1, greedy=False, generators=seed_generators(0, [0]), top_k=3)[0, :, 0]
    top3 = policy.logits_at(prompts[:1])[0, 0, -1].topk(3).indices
    assert set(first.tolist()) <= set(top3.tolist()) and len(set(first.tolist())) == 3


def test_decoding_pads_and_stops_by_default_as_the_character_tokenizer():
    # iftgym.decoding is core and cannot import the token world: its defaults are written there again
    from iftgym import decoding

    assert (decoding.PAD, decoding.EOS) == (PAD, EOS)
