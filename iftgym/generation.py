"""Decoding from sequence policies: greedy or sampled answers of every seed at once.

The special token ids are shared by every tokenizer of the toolkit (see :class:`iftgym.tokens.CharTokenizer`).
"""

from __future__ import annotations

import torch

from iftgym.policies.base import Policy

PAD, BOS, EOS = 0, 1, 2


def generate(
    policy: Policy,
    prompts: torch.Tensor,
    lengths: torch.Tensor,
    max_new_tokens: int,
    greedy: bool = True,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Answers of every seed of a sequence policy, ``(K, B, max_new_tokens)``, ``<pad>`` after ``<eos>``.

    ``prompts`` ``(B, P)`` are right-padded token ids and ``lengths`` ``(B,)`` their real lengths. Each step runs
    the policy on the whole buffer and reads every row's logits at its own last position: with a causal model the
    padding to the right of a row is never seen, so prompts of different lengths share one batch. Sampling draws
    one uniform per token from ``generator`` (on the CPU), so it is reproducible on any device.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} is out of range: expected temperature > 0")
    device = policy.embedding_table().device
    K, (B, P) = policy.n_seeds, prompts.shape
    buffer = torch.full((K, B, P + max_new_tokens), PAD, dtype=torch.long, device=device)
    buffer[..., :P] = prompts.to(device)
    position = lengths.to(device).expand(K, B).clone()  # where each row's next token goes
    answers = torch.full((K, B, max_new_tokens), PAD, dtype=torch.long, device=device)
    done = torch.zeros(K, B, dtype=torch.bool, device=device)
    for i in range(max_new_tokens):
        width = int(lengths.max()) + i
        logits = policy.logits_at(buffer[..., :width]).float()
        last = logits.gather(-2, (position - 1)[..., None, None].expand(K, B, 1, logits.shape[-1])).squeeze(-2)
        if greedy:
            token = last.argmax(-1)
        else:
            cdf = torch.softmax(last / temperature, dim=-1).cumsum(-1).cpu()
            # the first token whose cdf exceeds u * total: never one of probability 0, even for u = 0 or a total
            # that rounding left below 1
            u = torch.rand(K, B, 1, generator=generator) * cdf[..., -1:]
            token = (cdf <= u).sum(-1).clamp(max=cdf.shape[-1] - 1).to(device)
        token = torch.where(done, PAD, token)
        answers[..., i] = token
        buffer.scatter_(-1, position[..., None], token[..., None])
        position += 1
        done |= token == EOS
        if done.all():
            break
    return answers
