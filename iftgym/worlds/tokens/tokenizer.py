"""Tokenizers of the token world: the contract every tokenizer meets, the character tokenizer (the default), and
how prompts, answers and conversations become token ids.

A tokenizer (:class:`Tokenizer`) turns text into ids and back and knows three special ids: padding, the start of a
sequence (``bos_id``, ``None`` when the tokenizer has none) and the end of an answer (``eos_id``). ``chat`` renders a
conversation with its chat template. The character tokenizer writes ``<pad>``, ``<bos>``, ``<eos>`` as ids 0..2
and a conversation as ``role: content<eos>`` per turn (``assistant: `` opens the answer);
:class:`iftgym.worlds.tokens.hf_tokenizer.HFTokenizer` wraps a Hugging Face tokenizer and its own chat template.

A prompt is a string or a :data:`Conversation` (a tuple of :class:`Message`); an answer is a string, which in a
conversation is the content of the assistant's next turn. :func:`prompt_tokens` and :func:`answer_tokens` are how
every tokenizer renders them, so a chat template is applied the same way for every tokenizer: the answer's tokens
are what the template adds after the generation prompt, up to and including the first ``eos_id`` (templates that
close a turn with another token get ``eos_id`` appended).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from iftgym.io import write_json

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2
ROLES = ("system", "user", "assistant")
CHAT_SEPARATOR = ": "  # the character tokenizer's chat template: "role: content<eos>" per turn
CHAR_TOKENIZER_FILE = "iftgym_tokenizer.json"  # not tokenizer.json, which is Hugging Face's
CHAR_TOKENIZER_FORMAT = "iftgym.char-tokenizer/1"


@dataclass(frozen=True)
class Message:
    """One turn of a conversation (TRL's conversational format): ``role`` is system, user or assistant."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not supported: expected one of {', '.join(ROLES)}")
        if not isinstance(self.content, str):
            raise ValueError(f"content of a {self.role} message is {type(self.content).__name__}: expected a string")


Conversation = tuple[Message, ...]
Prompt = str | Conversation


@runtime_checkable
class Tokenizer(Protocol):
    """What the token world needs of a tokenizer."""

    pad_id: int
    bos_id: int | None
    eos_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """Ids of plain text, no special tokens added; text it cannot encode raises ``ValueError``."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Readable text of any ids, special tokens written by name."""
        ...

    def text(self, ids: Sequence[int]) -> str | None:
        """The text of ids that hold no special token, else ``None``."""
        ...

    def check_ids(self, ids: Iterable[int]) -> list[int]:
        """``ids`` as Python ints, each checked to be a token id."""
        ...

    def chat(self, messages: Conversation, add_generation_prompt: bool) -> list[int]:
        """The ids of ``messages`` rendered with the chat template (and the assistant's opening when asked)."""
        ...

    def save(self, folder: str) -> None:
        """Write the tokenizer into ``folder`` so that :func:`iftgym.worlds.tokens.load_tokenizer` reads it."""
        ...


def check_text(text: object) -> str:
    """``text`` checked to be a string, what every tokenizer's ``encode`` takes."""
    if not isinstance(text, str):
        raise ValueError(f"text={text!r} is {type(text).__name__}: expected a string")
    return text


def check_token_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    """``ids`` as a list of Python ints, each an integer in ``0..vocab_size - 1`` (a negative id would otherwise
    index from the end, and a bool or a float would pass for an integer)."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (Iterable, np.ndarray)):
        raise ValueError(f"ids={ids!r} is {type(ids).__name__}: expected a sequence of token ids")
    out = []
    accepted = f"expected an integer 0 <= id < {vocab_size} (the vocabulary size)"
    for i in ids:
        try:
            index = None if isinstance(i, (bool, np.bool_)) else operator.index(i)
        except TypeError:  # a float, a string...: not an integer
            index = None
        if index is None:
            raise ValueError(f"token id {i!r} is {type(i).__name__}: {accepted}")
        if not 0 <= index < vocab_size:
            raise ValueError(f"token id {i!r} is out of range: {accepted}")
        out.append(index)
    return out


def prompt_tokens(tokenizer: Tokenizer, prompt: Prompt) -> tuple[list[int], list[bool]]:
    """The ids a prompt is read as, and which of them are assistant tokens (a conversation's earlier assistant
    turns, which a demonstration in TRL's ``messages`` format trains on): a string is ``<bos>`` (when the tokenizer
    has one) and its text; a conversation is rendered with the chat template, generation prompt included."""
    if isinstance(prompt, str):
        ids = [*([] if tokenizer.bos_id is None else [tokenizer.bos_id]), *tokenizer.encode(prompt)]
        return ids, [False] * len(ids)
    ids = tokenizer.chat(prompt, add_generation_prompt=True)
    assistant = [False] * len(ids)
    for i, message in enumerate(prompt):
        if message.role == "assistant":
            turn, opened = _extension(tokenizer, prompt[: i + 1], prompt[:i])
            if ids[: len(turn)] != turn:
                _inconsistent()
            assistant[len(opened) : len(turn)] = [True] * (len(turn) - len(opened))
    return ids, assistant


def answer_tokens(tokenizer: Tokenizer, prompt: Prompt, answer: str) -> list[int]:
    """The ids of an answer to ``prompt``, through ``eos_id``: the text and ``eos_id`` after a string prompt; after
    a conversation, what the chat template adds for the assistant turn ``answer``, cut after its first ``eos_id``."""
    if isinstance(prompt, str):
        return [*tokenizer.encode(answer), tokenizer.eos_id]
    full, opened = _extension(tokenizer, (*prompt, Message("assistant", answer)), prompt)
    tail = full[len(opened) :]
    return tail[: tail.index(tokenizer.eos_id) + 1] if tokenizer.eos_id in tail else [*tail, tokenizer.eos_id]


def _extension(tokenizer: Tokenizer, longer: Conversation, shorter: Conversation) -> tuple[list[int], list[int]]:
    """The ids of ``longer`` (which continues ``shorter`` with an assistant turn) and of ``shorter`` opened for the
    assistant (none for an empty ``shorter``), the first checked to start with the second: a template that
    re-renders earlier turns cannot mark the answer's tokens."""
    full = tokenizer.chat(longer, add_generation_prompt=False)
    opened = tokenizer.chat(shorter, add_generation_prompt=True) if shorter else []
    if full[: len(opened)] != opened:
        _inconsistent()
    return full, opened


def _inconsistent() -> None:
    raise ValueError("the chat template renders a conversation differently once a turn is added, so the assistant's "
                     "tokens cannot be found: expected a template whose rendering of a conversation starts with that "
                     "of its beginning (plus the generation prompt before an assistant turn)")  # fmt: skip


def readable(tokenizer: Tokenizer, ids: Sequence[int]) -> str:
    """Text of ids a model wrote: decoded by ``tokenizer``, with ids beyond its vocabulary (a model's vocabulary
    may be larger, padded) written as ``<id N>``."""
    parts, run = [], []
    for i in (*ids, None):
        if i is not None and 0 <= i < tokenizer.vocab_size:
            run.append(i)
            continue
        if run:
            parts.append(tokenizer.decode(run))
            run = []
        if i is not None:
            parts.append(f"<id {i}>")
    return "".join(parts)


def _turn(message: Message) -> str:
    """One turn as the character tokenizer writes it: ``role: content``."""
    return f"{message.role}{CHAT_SEPARATOR}{message.content}"


def prompt_text(prompt: Prompt) -> str:
    """A prompt as one readable string: itself, or a conversation's turns as ``role: content`` lines."""
    return prompt if isinstance(prompt, str) else "\n".join(map(_turn, prompt))


def prompt_characters(prompt: Prompt) -> str:
    """Every character the character tokenizer writes for ``prompt`` (what its alphabet must hold): the string, or
    the turns of a conversation and the assistant's opening."""
    return prompt if isinstance(prompt, str) else "".join(map(_turn, (*prompt, Message("assistant", ""))))


class CharTokenizer:
    """Character-level tokenizer: ids 0..2 are ``<pad>``, ``<bos>``, ``<eos>``, then the sorted characters."""

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self, alphabet: str) -> None:
        if not isinstance(alphabet, str):
            raise ValueError(f"alphabet={alphabet!r} is {type(alphabet).__name__}: expected a string of characters")
        self.chars = "".join(sorted(set(alphabet)))
        self.itos = [*SPECIAL_TOKENS, *self.chars]
        self.stoi = {c: i for i, c in enumerate(self.chars, len(SPECIAL_TOKENS))}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a character outside the alphabet raises ``ValueError``."""
        try:
            return [self.stoi[c] for c in check_text(text)]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} is not in the vocabulary: expected one of {self.chars!r}"
            ) from None

    def check_ids(self, ids: Iterable[int]) -> list[int]:
        """``ids`` as a list of Python ints, each checked to be a token id (see :func:`check_token_ids`)."""
        return check_token_ids(ids, len(self.itos))

    def decode(self, ids: Sequence[int]) -> str:
        """Readable text of any ids, special tokens written by name (``"12<eos>"``); an id that is not a token id
        raises ``ValueError``."""
        return "".join(self.itos[i] for i in self.check_ids(ids))

    def text(self, ids: Sequence[int]) -> str | None:
        """The text of ids that are all characters, or ``None`` when a special token is among them; an id that is
        not a token id raises ``ValueError``."""
        checked = self.check_ids(ids)
        if any(i < len(SPECIAL_TOKENS) for i in checked):
            return None
        return "".join(self.itos[i] for i in checked)

    def chat(self, messages: Conversation, add_generation_prompt: bool) -> list[int]:
        """``<bos>``, then ``role: content<eos>`` for each message, then ``assistant: `` when asked."""
        ids = [BOS]
        for message in messages:
            ids += [*self.encode(_turn(message)), EOS]
        return ids + (self.encode(_turn(Message("assistant", ""))) if add_generation_prompt else [])

    def save(self, folder: str) -> None:
        """Write ``iftgym_tokenizer.json``: the alphabet (read back by :func:`iftgym.worlds.tokens.load_tokenizer`)."""
        write_json({"format": CHAR_TOKENIZER_FORMAT, "chars": self.chars}, Path(folder) / CHAR_TOKENIZER_FILE)


def unknown_characters(tokenizer: Tokenizer, text: str) -> list[str]:
    """The characters of ``text`` that ``tokenizer`` can only write as its unknown token (a Hugging Face tokenizer
    with an ``unk_token``; the character tokenizer refuses such characters itself), sorted."""
    hf = getattr(tokenizer, "hf", None)
    unknown = getattr(hf, "unk_token_id", None)
    chars = sorted(set(text))
    if unknown is None or not chars:
        return []
    return [c for c, ids in zip(chars, hf(chars, add_special_tokens=False)["input_ids"]) if unknown in ids]


def describe_characters(chars: list[str], most: int = 8) -> str:
    """``'A', 'B', 'C'``: characters for a message, at most ``most`` of them named."""
    shown = ", ".join(repr(c) for c in chars[:most])
    return shown + (f" and {len(chars) - most} more" if len(chars) > most else "")
