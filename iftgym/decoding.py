"""Decoding from sequence policies: greedy or sampled answers of every seed at once.

Works with any :class:`iftgym.world.Actor`. A policy that keeps a key-value cache (``kv_cache = True``: TinyGPT and
Hugging Face models, through their ``decode`` method) reads each prompt once and then one new token per step;
any other runs on the whole sequence at every step (``logits_at``). Both give the same answers: they compute the
same logits and draw the same random numbers.

Core, below worlds and policies: the token world decodes with it, and so does ``TinyGPT.generate``, so that no
policy imports a world module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from iftgym.validate import at_least, between, positive
from iftgym.world import Actor

# the default padding and end-of-answer ids: the character tokenizer's (iftgym.worlds.tokens.tokenizer, a test
# checks they agree)
PAD, EOS = 0, 2


def pad_prompts(prompts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of token ids as the right-padded ``(B, P)`` tensor and the ``(B,)`` lengths :func:`generate` takes."""
    lengths = torch.tensor([len(p) for p in prompts])
    width = int(lengths.max())
    return torch.tensor([[*p, *[pad] * (width - len(p))] for p in prompts], dtype=torch.long), lengths


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float = 1.0) -> torch.Tensor:
    """``logits (..., V)`` with every token outside the ``top_k`` most likely, and outside the smallest set whose
    probability reaches ``top_p`` (nucleus sampling; the most likely token always stays), set to ``-inf``."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        sorted_drop = probs.cumsum(-1) - probs >= top_p  # the better tokens already hold top_p
        logits = logits.masked_fill(torch.empty_like(sorted_drop).scatter_(-1, order, sorted_drop), float("-inf"))
    return logits


def generate(
    policy: Actor,
    prompts: torch.Tensor,
    lengths: torch.Tensor,
    max_new_tokens: int,
    greedy: bool = True,
    temperature: float = 1.0,
    generators: Sequence[torch.Generator] | None = None,
    *,
    eos: int = EOS,
    pad: int = PAD,
    top_k: int | None = None,
    top_p: float = 1.0,
    cache: bool = True,
) -> torch.Tensor:
    """Answers of every seed of a sequence policy, ``(K, B, max_new_tokens)``, ``pad`` after ``eos``.

    ``prompts`` are right-padded token ids, ``(B, P)`` shared by every seed or ``(K, B, P)`` one set per seed, and
    ``lengths`` their real lengths, ``(B,)`` or ``(K, B)``. Sampling (``greedy=False``) divides the logits by
    ``temperature``, keeps the ``top_k`` most likely tokens and the nucleus of probability ``top_p``, and draws one
    uniform per token of seed k from ``generators[k]`` (on the CPU), only while seed k has unfinished answers, so
    a seed's answers neither depend on the device nor on the other seeds. ``cache=False`` recomputes the whole
    sequence at every step even for a policy with a key-value cache (the reference the cache is tested against).

    The policy runs under ``torch.inference_mode`` (no autograd bookkeeping in any of its operations; the same
    numbers as under ``no_grad``); the answers returned are an ordinary tensor.
    """
    positive("temperature", temperature)
    between("top_p", top_p, 0, 1, include_low=False)
    if top_k is not None:
        at_least("top_k", top_k, 1, note="or None for no limit")
    at_least("max_new_tokens", max_new_tokens, 1)
    K = policy.n_seeds
    if not greedy and (generators is None or len(generators) != K):
        raise ValueError(f"sampling needs one torch.Generator per seed: expected {K}, got "
                         f"{None if generators is None else len(generators)}")  # fmt: skip
    with torch.inference_mode():
        answers = _answers(policy, prompts, lengths, max_new_tokens, greedy, temperature, generators, eos, pad,
                           top_k, top_p, cache)  # fmt: skip
    return answers.clone()  # an inference tensor could not be saved for a backward pass or changed in place


def _answers(
    policy: Actor,
    prompts: torch.Tensor,
    lengths: torch.Tensor,
    max_new_tokens: int,
    greedy: bool,
    temperature: float,
    generators: Sequence[torch.Generator] | None,
    eos: int,
    pad: int,
    top_k: int | None,
    top_p: float,
    cache: bool,
) -> torch.Tensor:
    """:func:`generate`'s token loop, its arguments checked."""
    K, B, device = policy.n_seeds, prompts.shape[-2], policy.device
    lengths = lengths.expand(K, B).to(device)
    if cache and getattr(policy, "kv_cache", False):
        steps = _cached_steps(policy, prompts, lengths, max_new_tokens)
    else:
        steps = _full_steps(policy, prompts, lengths, max_new_tokens, pad)
    answers = torch.full((K, B, max_new_tokens), pad, dtype=torch.long, device=device)
    done = torch.zeros(K, B, dtype=torch.bool, device=device)
    finished = [False] * K  # per seed: every answer has ended
    last = next(steps)
    for i in range(max_new_tokens):
        if greedy:
            token = last.argmax(-1)
        else:
            logits = last if temperature == 1.0 else last / temperature  # x / 1 is x: skipped
            cdf = torch.softmax(filter_logits(logits, top_k, top_p), dim=-1).cumsum(-1).cpu()
            u = torch.stack([torch.zeros(B, 1) if ended else torch.rand(B, 1, generator=generator)
                             for ended, generator in zip(finished, generators)])  # fmt: skip
            # the first token whose cdf exceeds u * total: never one of probability 0, even for u = 0 or a total
            # that rounding left below 1
            token = (cdf <= u * cdf[..., -1:]).sum(-1).clamp(max=cdf.shape[-1] - 1).to(device)
        token = torch.where(done, pad, token)
        answers[..., i] = token
        done |= token == eos
        finished = done.all(-1).tolist()
        if all(finished) or i == max_new_tokens - 1:
            break
        last = steps.send(token)
    steps.close()
    return answers


def _full_steps(policy: Actor, prompts: torch.Tensor, lengths: torch.Tensor, max_new_tokens: int, pad: int):
    """Coroutine: the logits ``(K, B, A)`` of each row's next token, given the token chosen after the last ones;
    the whole right-padded buffer is run at every step (a causal model never sees the padding right of a row)."""
    K, B = lengths.shape
    P = prompts.shape[-1]
    buffer = torch.full((K, B, P + max_new_tokens), pad, dtype=torch.long, device=policy.device)
    buffer[..., :P] = prompts.to(policy.device)
    position = lengths.clone()  # where each row's next token goes
    while True:
        logits = policy.logits_at(buffer[..., : int(position.max())]).float()
        token = yield logits.gather(-2, (position - 1)[..., None, None].expand(K, B, 1, logits.shape[-1]))[..., 0, :]
        buffer.scatter_(-1, position[..., None], token[..., None])
        position += 1


def _cached_steps(policy: Actor, prompts: torch.Tensor, lengths: torch.Tensor, max_new_tokens: int):
    """Like :func:`_full_steps`, with the policy's key-value cache: the prompts, left-aligned to end together
    (padding on the left, masked out of attention, positions counted from each row's first token), are read
    once, then each step reads the one new token (at most ``max_new_tokens`` answer tokens in all)."""
    K, B = lengths.shape
    P, device = prompts.shape[-1], policy.device
    columns = torch.arange(P, device=device)
    shift = P - lengths  # (K, B): how far each row moves right
    source = (columns - shift[..., None]).clamp(min=0)
    ids = prompts.to(device).expand(K, B, P).gather(-1, source)
    keys = torch.ones(K, B, P + max_new_tokens, dtype=torch.bool, device=device)  # every new token is real
    keys[..., :P] = columns >= shift[..., None]  # the prompts' real tokens
    positions = (columns - shift[..., None]).clamp(min=0)
    logits, state = policy.decode(policy.embed(ids), positions, keys[..., :P], None)
    for length in range(P + 1, P + max_new_tokens + 1):
        token = yield logits[..., -1, :].float()
        positions = positions[..., -1:] + 1
        logits, state = policy.decode(policy.embed(token[..., None]), positions, keys[..., :length], state)
