"""The character tokenizer and the special token ids every tokenizer of the toolkit shares."""

from __future__ import annotations

from collections.abc import Sequence

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
PAD, BOS, EOS = 0, 1, 2


class CharTokenizer:
    """Character-level tokenizer: ids 0..2 are ``<pad>``, ``<bos>``, ``<eos>``, then the sorted characters."""

    def __init__(self, alphabet: str) -> None:
        self.chars = "".join(sorted(set(alphabet)))
        self.itos = [*SPECIAL_TOKENS, *self.chars]
        self.stoi = {c: i for i, c in enumerate(self.chars, len(SPECIAL_TOKENS))}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a character outside the alphabet raises ``ValueError``."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} is not in the vocabulary: expected one of {self.chars!r}"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        """Readable text of any ids, special tokens written by name (``"12<eos>"``)."""
        return "".join(self.itos[int(i)] for i in ids)

    def text(self, ids: Sequence[int]) -> str | None:
        """The text of ids that are all characters, or ``None`` when a special token is among them."""
        if any(int(i) < len(SPECIAL_TOKENS) for i in ids):
            return None
        return "".join(self.itos[int(i)] for i in ids)
