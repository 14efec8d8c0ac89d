"""Decoding from sequence policies: greedy or sampled answers of every seed at once.

Works with any :class:`iftgym.world.Actor` (it only calls ``logits_at``), so the token world can roll policies out
without knowing their class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from iftgym.validate import positive
from iftgym.world import Actor
from iftgym.worlds.tokens.tokenizer import EOS, PAD


def generate(
    policy: Actor,
    prompts: torch.Tensor,
    lengths: torch.Tensor,
    max_new_tokens: int,
    greedy: bool = True,
    temperature: float = 1.0,
    generators: Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    """Answers of every seed of a sequence policy, ``(K, B, max_new_tokens)``, ``<pad>`` after ``<eos>``.

    ``prompts`` are right-padded token ids, ``(B, P)`` shared by every seed or ``(K, B, P)`` one set per seed, and
    ``lengths`` their real lengths, ``(B,)`` or ``(K, B)``. Each step runs the policy on the whole buffer and reads
    every row's logits at its own last position: with a causal model the padding to the right of a row is never
    seen, so prompts of different lengths share one batch. Sampling draws one uniform per token of seed k from
    ``generators[k]`` (on the CPU), and only while seed k has unfinished answers, so a seed's answers neither
    depend on the device nor on the other seeds.
    """
    positive("temperature", temperature)
    device, K = policy.device, policy.n_seeds
    if not greedy and (generators is None or len(generators) != K):
        raise ValueError(f"sampling needs one torch.Generator per seed: expected {K}, got "
                         f"{None if generators is None else len(generators)}")  # fmt: skip
    B, P = prompts.shape[-2:]
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
            u = torch.zeros(K, B, 1)
            for k, finished in enumerate(done.all(-1).tolist()):
                if not finished:
                    u[k] = torch.rand(B, 1, generator=generators[k])
            # the first token whose cdf exceeds u * total: never one of probability 0, even for u = 0 or a total
            # that rounding left below 1
            token = (cdf <= u * cdf[..., -1:]).sum(-1).clamp(max=cdf.shape[-1] - 1).to(device)
        token = torch.where(done, PAD, token)
        answers[..., i] = token
        buffer.scatter_(-1, position[..., None], token[..., None])
        position += 1
        done |= token == EOS
        if done.all():
            break
    return answers
