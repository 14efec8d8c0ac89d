"""``iftgym generate``: a saved model's answers to prompts, greedy or sampled, with its key-value cache."""

from __future__ import annotations

import argparse

from rich.console import Console

from iftgym.cli.common import quiet_hugging_face


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym generate`` and its options."""
    gen = sub.add_parser("generate", help="answer prompts with a model saved by iftgym lm --save (or any Hugging "
                         "Face model folder)")  # fmt: skip
    gen.add_argument("--model", required=True, metavar="DIR", help="model folder (iftgym lm --save DIR/<algorithm>)")
    gen.add_argument("--prompt", action="append", required=True, metavar="TEXT",
                     help="a prompt (repeatable; all are answered in one batch)")  # fmt: skip
    gen.add_argument("--chat", action="store_true",
                     help="send each prompt as a user turn through the tokenizer's chat template")  # fmt: skip
    gen.add_argument("--max-new-tokens", type=int, default=None,
                     help="longest answer in tokens (default: 64, or what the model's context leaves)")  # fmt: skip
    gen.add_argument("--sample", action="store_true", help="sample instead of taking the most likely token")
    gen.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    gen.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens only")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: the smallest set of probability p")
    gen.add_argument("--seed", type=int, default=0, help="seed of the sampling (default: 0)")
    gen.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    gen.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the whole sequence at every step instead of using the key-value cache",
    )
    gen.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
    """Run ``iftgym generate`` with parsed ``args``, printing to ``console``."""
    from rich.markup import escape

    from iftgym.experiments.generate import GenerateConfig, generate_text
    from iftgym.explain.tables import generation_heading, generation_table

    quiet_hugging_face()
    config = GenerateConfig(
        model=args.model, prompts=args.prompt, chat=args.chat, max_new_tokens=args.max_new_tokens, sample=args.sample,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed, device=args.device,
        cache=not args.no_cache,
    )  # fmt: skip
    results = generate_text(config)
    console.print(escape(generation_heading(results)))
    console.print(generation_table(results))
    console.print(f"{results['new_tokens']} new tokens in {results['seconds']:.3f} s "
                  f"({results['new_tokens'] / max(results['seconds'], 1e-9):,.0f} tokens/s)")  # fmt: skip
