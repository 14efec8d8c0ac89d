"""Decoding from sequence policies: batched greedy answers equal one prompt at a time, sampling never draws an
impossible token."""

from __future__ import annotations

import pytest
import torch

from iftgym.policies.base import Policy
from iftgym.worlds.tokens import EOS
from iftgym.worlds.tokens.generation import generate


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
