"""Hugging Face tokenizers in the token world, and reading any tokenizer back from a folder.

:class:`HFTokenizer` wraps a ``transformers`` tokenizer (built in code, or read from a local folder with
``local_files_only=True``: nothing is downloaded) to the :class:`iftgym.worlds.tokens.tokenizer.Tokenizer` contract.
Its special ids are the tokenizer's own: ``eos_id`` its end-of-sequence token (which a chat template should close
each assistant turn with), ``bos_id`` its beginning-of-sequence token or ``None``, ``pad_id`` its padding token or,
as TRL does, ``eos_id``. ``transformers`` is the ``hf`` extra: this module imports it only when used.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from iftgym.io import read_json
from iftgym.worlds.tokens.tokenizer import (
    CHAR_TOKENIZER_FILE,
    CHAR_TOKENIZER_FORMAT,
    ROLES,
    CharTokenizer,
    Conversation,
    Tokenizer,
    check_text,
    check_token_ids,
)

HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")  # what save_pretrained writes; one suffices
HF_EXTRA = 'transformers is not installed: install the Hugging Face extra with pip install -e ".[hf]"'


def import_transformers() -> Any:
    """The ``transformers`` module, or a one-line ``ValueError`` saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ValueError(HF_EXTRA) from None
    return transformers


class HFTokenizer:
    """A Hugging Face tokenizer behind the toolkit's tokenizer contract."""

    def __init__(self, tokenizer: Any) -> None:
        transformers = import_transformers()
        if not isinstance(tokenizer, transformers.PreTrainedTokenizerBase):
            raise ValueError(f"tokenizer={tokenizer!r} is {type(tokenizer).__name__}: expected a transformers "
                             "tokenizer (PreTrainedTokenizerBase)")  # fmt: skip
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token: expected one, since answers end with it")
        self.hf = tokenizer
        self.eos_id = int(tokenizer.eos_token_id)
        self.bos_id = None if tokenizer.bos_token_id is None else int(tokenizer.bos_token_id)
        self.pad_id = self.eos_id if tokenizer.pad_token_id is None else int(tokenizer.pad_token_id)
        self.special = set(tokenizer.all_special_ids)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        return list(self.hf(check_text(text), add_special_tokens=False)["input_ids"])

    def check_ids(self, ids: Iterable[int]) -> list[int]:
        return check_token_ids(ids, self.vocab_size)

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(self.check_ids(ids), skip_special_tokens=False)

    def text(self, ids: Sequence[int]) -> str | None:
        checked = self.check_ids(ids)
        return None if self.special.intersection(checked) else self.hf.decode(checked)

    def chat(self, messages: Conversation, add_generation_prompt: bool) -> list[int]:
        """The chat template's text of ``messages``, tokenised without adding special tokens (the template writes
        its own)."""
        if not getattr(self.hf, "chat_template", None):
            raise ValueError("the tokenizer has no chat template: conversational data needs one (set "
                             "tokenizer.chat_template, or use prompt/completion strings)")  # fmt: skip
        text = self.hf.apply_chat_template([{"role": m.role, "content": m.content} for m in messages], tokenize=False,
                                           add_generation_prompt=add_generation_prompt)  # fmt: skip
        return self.encode(text)

    def save(self, folder: str | os.PathLike) -> None:
        self.hf.save_pretrained(folder)


def load_tokenizer(folder: str | os.PathLike) -> Tokenizer:
    """The tokenizer saved in ``folder``: the character tokenizer's ``iftgym_tokenizer.json``, else a Hugging Face
    tokenizer read with ``local_files_only=True``. Never unpickles; every failure is one ``ValueError``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"tokenizer folder {str(folder)!r} does not exist: expected a folder written by "
                         "iftgym lm --save or save_pretrained")  # fmt: skip
    char_file = folder / CHAR_TOKENIZER_FILE
    if char_file.is_file():
        spec = read_json(char_file, "tokenizer file")
        if not isinstance(spec, dict) or spec.get("format") != CHAR_TOKENIZER_FORMAT or not isinstance(
                spec.get("chars"), str):  # fmt: skip
            raise ValueError(f"tokenizer file {str(char_file)!r} is not an iftgym character tokenizer: expected "
                             f"format {CHAR_TOKENIZER_FORMAT!r} and a string of characters")  # fmt: skip
        return CharTokenizer(spec["chars"])
    if not any((folder / name).is_file() for name in HF_TOKENIZER_FILES):
        files = ", ".join(HF_TOKENIZER_FILES)
        raise ValueError(f"{str(folder)!r} holds no tokenizer: expected {CHAR_TOKENIZER_FILE} (iftgym lm --save) or "
                         f"a Hugging Face tokenizer's files ({files}; save_pretrained)")  # fmt: skip
    transformers = import_transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read a tokenizer from {str(folder)!r}: {first}") from None
    return HFTokenizer(tokenizer)


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def character_tokenizer(alphabet: str) -> HFTokenizer:
    """A Hugging Face tokenizer of single characters with a chat template, built in code (nothing downloaded): one
    token per character of ``alphabet``, specials ``<pad>``, ``<s>``, ``</s>`` (the end of every turn),
    ``<unk>`` and one ``<|role|>`` token per role. For tests and examples; ``save`` writes it as any other."""
    transformers = import_transformers()
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as RustTokenizer

    specials = ["<pad>", "<s>", "</s>", "<unk>", *(f"<|{role}|>" for role in ROLES)]
    vocab = {token: i for i, token in enumerate([*specials, *sorted(set(alphabet))])}
    tokenizer = RustTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        additional_special_tokens=specials[4:],
    )  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    return HFTokenizer(fast)
