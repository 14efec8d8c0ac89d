"""Model folders: a trained policy and its tokenizer, written by ``iftgym lm --save`` and read by
``iftgym generate``, in the formats of their ecosystems and never pickled.

A folder holds ``iftgym_model.json`` (what it holds and the caller's metadata), the tokenizer (the character
tokenizer's ``iftgym_tokenizer.json``, or a Hugging Face tokenizer's own files), and the weights:

* a toolkit policy (TinyGPT, or any registered policy): ``policy.safetensors``, its constructor arguments in the
  header (:mod:`iftgym.policies.checkpoint`);
* a Hugging Face model (:class:`iftgym.policies.hf.HFPolicy`): one folder per seed, ``seed-<s>/``, written by
  ``save_pretrained`` (``config.json``, ``model.safetensors``) with the tokenizer beside it, so that
  ``AutoModelForCausalLM.from_pretrained("DIR/seed-0")`` reads it as any other model (and ``iftgym generate`` reads
  the seed's folder alone).

A plain Hugging Face model folder (``config.json`` and safetensors weights, with its tokenizer) is read too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from iftgym.io import inside, read_json, replace_folder, write_json
from iftgym.policies.base import Policy, resolve_device
from iftgym.policies.checkpoint import load_policy, save_policy
from iftgym.worlds.tokens.hf_tokenizer import load_tokenizer
from iftgym.worlds.tokens.tokenizer import Tokenizer

MODEL_FILE = "iftgym_model.json"
MODEL_FORMAT = "iftgym.model/1"
WEIGHTS = "policy.safetensors"


def model_folder(save: str | os.PathLike, algorithm: str) -> Path:
    """Where ``iftgym lm --save DIR`` writes an algorithm's model: ``DIR/<algorithm>``, the name made safe
    (:func:`iftgym.io.safe_name`: ``sft+dpo`` -> ``sft-dpo``), so no rule or variant name reaches outside ``DIR``."""
    return inside(save, algorithm)


def check_model_destination(path: str | os.PathLike) -> Path:
    """Refuse, before any training, a destination that holds something other than a model folder (saving
    replaces the folder, so a folder of the user's would be lost)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (path / MODEL_FILE).is_file())):
        raise ValueError(f"cannot save a model to {str(path)!r}: it exists and is not a model folder written by "
                         "iftgym (saving replaces it): expected a new folder or an earlier model folder")  # fmt: skip
    return path


def save_model(
    policy: Policy, tokenizer: Tokenizer, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``policy`` and ``tokenizer`` into the model folder ``path``, replacing it as a whole (a reader never
    sees half a folder); ``metadata`` is any JSON-ready dict (the training config). Returns the path."""
    from iftgym.policies.hf import HFPolicy

    path = check_model_destination(path)
    kind = "hf" if isinstance(policy, HFPolicy) else "policy"
    with replace_folder(path) as folder:
        tokenizer.save(str(folder))
        if isinstance(policy, HFPolicy):
            for seed_folder in policy.save(folder):  # each a whole model folder, its tokenizer included
                tokenizer.save(str(seed_folder))
        else:
            save_policy(policy, folder / WEIGHTS)
        write_json({"format": MODEL_FORMAT, "kind": kind, "seeds": list(policy.seeds), "metadata": metadata or {}},
                   folder / MODEL_FILE)  # fmt: skip
    return path


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Policy, Tokenizer]:
    """The policy (every seed) and tokenizer of a model folder written by :func:`save_model`, or of a plain Hugging
    Face model folder; every failure is one ``ValueError`` naming the folder (a tokenizer larger than the model's
    vocabulary too)."""
    policy, tokenizer = _read_model(Path(path), resolve_device(device))
    if tokenizer.vocab_size > policy.n_actions:  # its ids beyond the model's would index past its embedding
        raise ValueError(f"the tokenizer of {str(path)!r} has {tokenizer.vocab_size} tokens and the model reads "
                         f"{policy.n_actions}: expected a tokenizer no larger than the model's vocabulary")  # fmt: skip
    return policy, tokenizer


def _read_model(path: Path, device: torch.device) -> tuple[Policy, Tokenizer]:
    """What :func:`load_model` reads, before the two are checked against each other."""
    from iftgym.policies.hf import HFPolicy

    if not path.is_dir():
        raise ValueError(f"model folder {str(path)!r} does not exist: expected a folder written by iftgym lm --save "
                         "or save_pretrained")  # fmt: skip
    if not (path / MODEL_FILE).is_file():
        if (path / "config.json").is_file():  # a Hugging Face model folder
            tokenizer = load_tokenizer(path)  # the cheaper read first
            return HFPolicy(pretrained=path, device=device), tokenizer
        raise ValueError(f"{str(path)!r} is not a model folder: expected {MODEL_FILE} (iftgym lm --save) or "
                         "config.json (save_pretrained)")  # fmt: skip
    spec = read_json(path / MODEL_FILE, "model description")
    if not isinstance(spec, dict) or spec.get("format") != MODEL_FORMAT or spec.get("kind") not in ("hf", "policy"):
        raise ValueError(f"{str(path / MODEL_FILE)!r} is not an iftgym model description: expected format "
                         f"{MODEL_FORMAT!r} and kind 'hf' or 'policy'")  # fmt: skip
    tokenizer = load_tokenizer(path)
    if spec["kind"] == "policy":
        return load_policy(path / WEIGHTS, device), tokenizer
    seeds = spec.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"{str(path / MODEL_FILE)!r} has no valid list of seeds: expected a list of integers")
    return HFPolicy(pretrained=[path / f"seed-{seed}" for seed in seeds], seeds=seeds, device=device), tokenizer
