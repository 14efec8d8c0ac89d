"""Tokenizers: the character tokenizer (round trips, special tokens, unknown characters), the contract both
tokenizers meet, and how conversations become ids with only the assistant's tokens marked."""

from __future__ import annotations

import importlib.util

import pytest

from iftgym.worlds.tokens import EOS, PAD, CharTokenizer
from iftgym.worlds.tokens.tokenizer import (
    Message,
    Tokenizer,
    answer_tokens,
    prompt_characters,
    prompt_text,
    prompt_tokens,
    readable,
)


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


# -- the tokenizer contract: conversations, chat templates, saving --------------------------------------------------
CONVERSATION = (
    Message("system", "be brief"),
    Message("user", "hi"),
    Message("assistant", "yo"),
    Message("user", "ok?"),
)


def tokenizers() -> list:
    """The character tokenizer and a Hugging Face one (when transformers is installed), over the same characters."""
    alphabet = "abcdefghijklmnopqrstuvwxyz ?:"
    found = [CharTokenizer(alphabet)]
    if importlib.util.find_spec("transformers") is not None:
        from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer

        found.append(character_tokenizer(alphabet))
    return found


@pytest.mark.parametrize("tok", tokenizers(), ids=lambda t: type(t).__name__)
def test_both_tokenizers_meet_the_contract(tok, tmp_path) -> None:
    from iftgym.worlds.tokens.hf_tokenizer import load_tokenizer

    assert isinstance(tok, Tokenizer)
    ids = tok.encode("hi there")
    assert tok.text(ids) == "hi there" and tok.text([*ids, tok.eos_id]) is None
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert type(again) is type(tok) and again.encode("hi there") == ids and again.vocab_size == tok.vocab_size
    assert again.chat(CONVERSATION, True) == tok.chat(CONVERSATION, True)


@pytest.mark.parametrize("tok", tokenizers(), ids=lambda t: type(t).__name__)
def test_a_conversation_marks_exactly_its_assistant_turns(tok) -> None:
    ids, assistant = prompt_tokens(tok, CONVERSATION)
    assert ids == tok.chat(CONVERSATION, add_generation_prompt=True)
    marked = [i for i, a in zip(ids, assistant) if a]
    assert marked == [*tok.encode("yo"), tok.eos_id]  # the earlier answer and the token that closes its turn
    answer = answer_tokens(tok, CONVERSATION, "fine")
    assert answer == [*tok.encode("fine"), tok.eos_id]
    assert tok.chat((*CONVERSATION, Message("assistant", "fine")), False)[: len(ids) + len(answer)] == ids + answer


@pytest.mark.parametrize("tok", tokenizers(), ids=lambda t: type(t).__name__)
def test_a_string_prompt_is_bos_and_its_text(tok) -> None:
    ids, assistant = prompt_tokens(tok, "hi")
    assert ids == [tok.bos_id, *tok.encode("hi")] and not any(assistant)
    assert answer_tokens(tok, "hi", "yo") == [*tok.encode("yo"), tok.eos_id]


def test_the_character_tokenizer_writes_role_content_turns() -> None:
    tok = CharTokenizer(prompt_characters(CONVERSATION))
    assert tok.decode(tok.chat(CONVERSATION[1:3], True)) == "<bos>user: hi<eos>assistant: yo<eos>assistant: "
    assert prompt_text(CONVERSATION[1:3]) == "user: hi\nassistant: yo" and prompt_text("plain") == "plain"


def test_a_template_that_rewrites_earlier_turns_is_refused() -> None:
    transformers = pytest.importorskip("transformers")
    from iftgym.worlds.tokens.hf_tokenizer import HFTokenizer, character_tokenizer

    fast = character_tokenizer("abcdefghijklmnopqrstuvwxyz").hf
    # a template that numbers the turns from the end: adding a turn changes how the earlier ones are written
    fast.chat_template = "{% for m in messages %}{{ (messages|length - loop.index)|string }}{{ m['content'] }}" \
                         "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"  # fmt: skip
    assert isinstance(fast, transformers.PreTrainedTokenizerBase)
    with pytest.raises(ValueError, match="chat template renders a conversation differently"):
        prompt_tokens(HFTokenizer(fast), CONVERSATION)


def test_loading_a_tokenizer_never_guesses(tmp_path) -> None:
    from iftgym.worlds.tokens.hf_tokenizer import load_tokenizer

    with pytest.raises(ValueError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "iftgym_tokenizer.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="is not an iftgym character tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "iftgym_tokenizer.json").write_text("not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_tokenizer(tmp_path)


def test_ids_beyond_the_tokenizer_are_written_by_number() -> None:
    tok = CharTokenizer("ab")
    assert readable(tok, [3, 4, 9, 3, 2]) == "ab<id 9>a<eos>" and readable(tok, []) == ""
