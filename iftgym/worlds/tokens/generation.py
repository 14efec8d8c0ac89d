"""Decoding lives in :mod:`iftgym.decoding` (core, so that policies and worlds both use it); these names stay
importable from here."""

from iftgym.decoding import filter_logits, generate, pad_prompts

__all__ = ["filter_logits", "generate", "pad_prompts"]
