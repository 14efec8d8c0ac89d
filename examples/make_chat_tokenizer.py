"""Write a Hugging Face tokenizer for the shipped chat sample into a folder: one token per character of the data,
``<s>``, ``</s>`` (which ends every turn), ``<pad>``, ``<unk>``, a token per role and a chat template. Built in
code, so nothing is downloaded; ``iftgym lm --tokenizer FOLDER`` and ``AutoTokenizer.from_pretrained(FOLDER)`` read
it.

    python examples/make_chat_tokenizer.py runs/chat-tokenizer
"""

from __future__ import annotations

import argparse

from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer
from iftgym.worlds.tokens.jsonl import JSONLTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="where to write the tokenizer")
    parser.add_argument("--data", default="chat", help="the JSONL file (or shipped sample) whose characters it holds")
    args = parser.parse_args()
    tokenizer = character_tokenizer(JSONLTask(args.data).alphabet)
    tokenizer.save(args.folder)
    print(f"wrote a tokenizer of {tokenizer.vocab_size} tokens with a chat template to {args.folder}")


if __name__ == "__main__":
    main()
