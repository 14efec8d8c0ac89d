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


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([-1], r"^token id -1 is out of range: expected an integer 0 <= id < 6 \(the vocabulary size\)$"),
        ([3, 6], r"^token id 6 is out of range: expected an integer 0 <= id < 6"),
        ([1.0], r"^token id 1\.0 is float: expected an integer 0 <= id < 6"),
        ([True], r"^token id True is bool: expected an integer"),
        (["a"], r"^token id 'a' is str: expected an integer"),
        (3, r"^ids=3 is int: expected a sequence of token ids$"),
        ("ab", r"^ids='ab' is str: expected a sequence of token ids$"),
    ],
)
def test_decode_and_text_refuse_ids_outside_the_vocabulary(ids, message):
    # -1 used to decode silently as the last character (Python's negative indexing), 6 gave a bare IndexError
    tok = CharTokenizer("ba+")
    with pytest.raises(ValueError, match=message):
        tok.decode(ids)
    with pytest.raises(ValueError, match=message):
        tok.text(ids)


def test_decode_accepts_numpy_and_torch_integers():
    import numpy as np
    import torch

    tok = CharTokenizer("ba+")
    assert tok.decode(np.array([4, 5, EOS])) == tok.decode(torch.tensor([4, 5, EOS])) == "ab<eos>"
    assert tok.text([np.int64(3)]) == "+" and tok.text([]) == ""


def test_tokenizer_refuses_non_strings():
    with pytest.raises(ValueError, match=r"^alphabet=5 is int: expected a string of characters$"):
        CharTokenizer(5)
    with pytest.raises(ValueError, match=r"^text=\['a'\] is list: expected a string$"):
        CharTokenizer("a").encode(["a"])
