"""The character tokenizer: round trips, special tokens, unknown characters."""

from __future__ import annotations

import pytest

from iftgym.worlds.tokens import EOS, PAD, CharTokenizer


def test_tokenizer_round_trip_and_specials():
    tok = CharTokenizer("ba+")
    assert tok.itos[:3] == ["<pad>", "<bos>", "<eos>"] and tok.vocab_size == 6
    ids = tok.encode("ab+")
    assert tok.text(ids) == "ab+" and tok.decode([*ids, EOS]) == "ab+<eos>"
    assert tok.text([*ids, PAD]) is None
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        tok.encode("az")
