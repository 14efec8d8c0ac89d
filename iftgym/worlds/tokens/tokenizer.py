"""The character tokenizer and the special token ids every tokenizer of the toolkit shares."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence

import numpy as np

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2


class CharTokenizer:
    """Character-level tokenizer: ids 0..2 are ``<pad>``, ``<bos>``, ``<eos>``, then the sorted characters."""

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
        if not isinstance(text, str):
            raise ValueError(f"text={text!r} is {type(text).__name__}: expected a string")
        try:
            return [self.stoi[c] for c in text]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} is not in the vocabulary: expected one of {self.chars!r}"
            ) from None

    def check_ids(self, ids: Iterable[int]) -> list[int]:
        """``ids`` as a list of Python ints, each checked to be a token id: an integer in ``0..vocab_size - 1`` (a
        negative id would otherwise index from the end, and a bool or a float would pass for an integer)."""
        if isinstance(ids, (str, bytes)) or not isinstance(ids, (Iterable, np.ndarray)):
            raise ValueError(f"ids={ids!r} is {type(ids).__name__}: expected a sequence of token ids")
        out = []
        for i in ids:
            try:
                index = None if isinstance(i, (bool, np.bool_)) else operator.index(i)
            except TypeError:  # a float, a string...: not an integer
                index = None
            accepted = f"expected an integer 0 <= id < {len(self.itos)} (the vocabulary size)"
            if index is None:
                raise ValueError(f"token id {i!r} is {type(i).__name__}: {accepted}")
            if not 0 <= index < len(self.itos):
                raise ValueError(f"token id {i!r} is out of range: {accepted}")
            out.append(index)
        return out

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
