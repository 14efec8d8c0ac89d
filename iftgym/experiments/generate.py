"""Answers of a saved model to new prompts: greedy or sampled, every seed of the model at once.

:func:`generate_text` reads a model folder (:mod:`iftgym.policies.folder`: written by ``iftgym lm --save``, or a
plain Hugging Face folder), renders each prompt as the model was trained to read it (``<bos>`` and the text, or with
``chat`` a user turn through the tokenizer's chat template), decodes with the model's key-value cache and returns
the answers as text; ``iftgym generate`` prints them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from iftgym.decoding import generate, pad_prompts
from iftgym.policies.folder import load_model
from iftgym.validate import at_least, between, positive
from iftgym.world import seed_generators
from iftgym.worlds.tokens.tokenizer import (
    Message,
    Tokenizer,
    describe_characters,
    prompt_tokens,
    readable,
    unknown_characters,
)

MAX_NEW_TOKENS = 4096
DEFAULT_NEW_TOKENS = 64


@dataclass
class GenerateConfig:
    """What to generate: ``prompts`` for the model folder ``model``; greedy unless ``sample`` (then with
    ``temperature``, ``top_k`` and ``top_p``, seed k drawing from its own generator of ``seed``); ``chat`` wraps
    each prompt as a user turn of a conversation; ``max_new_tokens`` ``None``: 64, or fewer where the model's
    context ends sooner; ``cache=False`` decodes without the key-value cache."""

    model: str
    prompts: list[str] = field(default_factory=list)
    chat: bool = False
    max_new_tokens: int | None = None
    sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    seed: int = 0
    device: str = "cpu"
    cache: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.prompts, str) or not self.prompts or not all(isinstance(p, str) for p in self.prompts):
            raise ValueError("prompts must be a non-empty list of strings: expected at least one --prompt TEXT")
        for number, prompt in enumerate(self.prompts, 1):
            try:
                prompt.encode("utf-8")
            except UnicodeEncodeError as err:  # a byte that is not UTF-8 reaches Python as a lone surrogate
                bad = prompt[err.start]
                byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else f"{bad!r}"
                raise ValueError(f"prompt {number} is not UTF-8 text ({byte} at character {err.start + 1}): expected "
                                 "prompts in UTF-8") from None  # fmt: skip
        if self.max_new_tokens is not None:
            at_least("max_new_tokens", self.max_new_tokens, 1, high=MAX_NEW_TOKENS, note="or None")
        positive("temperature", self.temperature)
        between("top_p", self.top_p, 0, 1, include_low=False)
        if self.top_k is not None:
            at_least("top_k", self.top_k, 1)
        at_least("seed", self.seed, 0)
        if not self.sample and (self.temperature != 1.0 or self.top_k is not None or self.top_p != 1.0):
            raise ValueError("temperature, top_k and top_p only apply to sampling: add sample (--sample) or drop them")


def encode_prompts(tokenizer: Tokenizer, prompts: list[str], chat: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded prompt ids ``(B, P)`` and their lengths ``(B,)``."""
    rendered = [prompt_tokens(tokenizer, (Message("user", p),) if chat else p)[0] for p in prompts]
    return pad_prompts(rendered, tokenizer.pad_id)


def generate_text(config: GenerateConfig) -> dict[str, Any]:
    """Every seed's answer to every prompt: ``{"answers": [[text per seed] per prompt], "finished": [[bool]...],
    "new_tokens", "seconds", ...}``; an answer that did not reach ``<eos>`` within ``max_new_tokens`` is
    unfinished."""
    policy, tokenizer = load_model(config.model, config.device)
    for number, prompt in enumerate(config.prompts, 1):
        lacking = unknown_characters(tokenizer, prompt)
        if lacking:
            raise ValueError(f"prompt {number} has characters the model's tokenizer lacks: "
                             f"{describe_characters(lacking)} (they would be read as its unknown token): expected "
                             "prompts in the characters the model was trained on")  # fmt: skip
    prompts, lengths = encode_prompts(tokenizer, config.prompts, config.chat)
    limit, longest = getattr(policy, "block_size", None), int(lengths.max())  # positions the model reads
    room = MAX_NEW_TOKENS if limit is None else limit - longest
    if room < 1:
        raise ValueError(f"the longest prompt is {longest} tokens and the model reads {limit}: expected shorter "
                         "prompts, leaving room for an answer")  # fmt: skip
    new = min(DEFAULT_NEW_TOKENS, room) if config.max_new_tokens is None else config.max_new_tokens
    if new > room:
        raise ValueError(f"max_new_tokens={new} is out of range: the longest prompt is {longest} tokens and the "
                         f"model reads {limit}, so expected at most {room}")  # fmt: skip
    generators = seed_generators(config.seed, policy.seeds) if config.sample else None
    start = time.perf_counter()
    with torch.no_grad():
        out = generate(policy, prompts, lengths, new, not config.sample, config.temperature,
                       generators, eos=tokenizer.eos_id, pad=tokenizer.pad_id, top_k=config.top_k,
                       top_p=config.top_p, cache=config.cache).cpu()  # fmt: skip
    seconds = time.perf_counter() - start
    answers, finished, new_tokens = [], [], 0
    for b in range(len(config.prompts)):
        texts, ends = [], []
        for k in range(policy.n_seeds):
            ids = out[k, b].tolist()
            end = ids.index(tokenizer.eos_id) if tokenizer.eos_id in ids else len(ids)
            new_tokens += min(end + 1, len(ids))
            texts.append(readable(tokenizer, ids[:end]))
            ends.append(end < len(ids))
        answers.append(texts)
        finished.append(ends)
    return {"config": asdict(config), "seeds": list(policy.seeds), "prompts": list(config.prompts),
            "answers": answers, "finished": finished, "new_tokens": new_tokens, "seconds": seconds}  # fmt: skip
