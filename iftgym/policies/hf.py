"""Any Hugging Face causal language model as a policy: K seeds of one architecture on the toolkit's API.

:class:`HFPolicy` holds K copies of a ``transformers`` causal LM (``AutoModelForCausalLM``), built from a config in
code (seed k initialised under ``torch.manual_seed(seeds[k])``, so a seed starts from the same weights whatever
other seeds train beside it) or read from a local folder (``from_pretrained(..., local_files_only=True)``, safetensors
only: nothing is downloaded or unpickled; every seed starts from the pretrained weights, and seeds then differ in
what they sample and draw). Its encoding table is each copy's ``get_input_embeddings()`` weight, so IFT mixes input
embeddings and feeds them as ``inputs_embeds``, as the reference code does, and every rule trains it through the
same loop. Dropout is off (the models stay in ``eval`` mode), so every random number a run draws comes from its
per-seed generators. ``decode`` runs the model with its own key-value cache (``past_key_values``) for generation.

``transformers`` is the ``hf`` extra; this module imports it only when a policy is built.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iftgym.policies.base import Policy, check_parameter_memory, resolve_device
from iftgym.worlds.tokens.hf_tokenizer import import_transformers


def model_config(config: Any) -> Any:
    """A ``transformers`` config from a config object or a dict with a ``model_type`` (``{"model_type": "gpt2",
    "n_layer": 2, ...}``); anything else is one short ``ValueError``."""
    transformers = import_transformers()
    if isinstance(config, transformers.PretrainedConfig):
        return config
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ValueError(f"config={config!r} is not a model config: expected a transformers config or a dict with a "
                         "'model_type' such as 'gpt2'")  # fmt: skip
    settings = dict(config)
    kind = settings.pop("model_type")
    if kind not in transformers.CONFIG_MAPPING:
        raise ValueError(f"model_type {kind!r} is unknown to transformers {transformers.__version__}: expected a model "
                         "type it knows, such as gpt2, llama, qwen2")  # fmt: skip
    try:
        return transformers.AutoConfig.for_model(kind, **settings)
    except Exception as err:  # user input: transformers and huggingface_hub raise classes of their own
        why = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"cannot build a {kind} config from {config}: {why}") from None


class HFPolicy(Policy):
    """K seeds of a Hugging Face causal LM as a policy: one action per token of the model's vocabulary.

    Args:
        config: a ``transformers`` config, or a dict of one with its ``model_type``; the model is built from it.
        pretrained: instead of ``config``, a local folder written by ``save_pretrained`` (every seed starts from
            it), or one folder per seed.
        seeds: K seeds, or their count.
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``...
    """

    markov = False
    kv_cache = True

    def __init__(
        self,
        config: Any = None,
        pretrained: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        seeds: int | Sequence[int] = 1,
        device: str | torch.device = "auto",
    ) -> None:
        transformers = import_transformers()
        if (config is None) == (pretrained is None):
            raise ValueError("HFPolicy takes a config or a pretrained folder: expected exactly one of them")
        device = resolve_device(device)
        folders: list[Path] = []
        if pretrained is not None:
            single = isinstance(pretrained, (str, os.PathLike))
            folders = [Path(pretrained)] if single else [Path(f) for f in pretrained]
            for folder in folders:
                if not (folder / "config.json").is_file():
                    raise ValueError(f"pretrained={str(folder)!r} is not a model folder: expected a folder with "
                                     "config.json and model.safetensors (written by save_pretrained)")  # fmt: skip
            config = transformers.AutoConfig.from_pretrained(folders[0], local_files_only=True)
        config = model_config(config)
        super().__init__(seeds, config.vocab_size)
        if pretrained is not None and len(folders) == 1:
            folders *= self.n_seeds
        if len(folders) not in (0, self.n_seeds):
            raise ValueError(f"got {len(folders)} pretrained folders for {self.n_seeds} seeds: expected one folder, "
                             "or one per seed")  # fmt: skip
        models = []
        for k in range(self.n_seeds):
            with torch.random.fork_rng(devices=[]):  # the seed's own initialisation, the global RNG untouched
                torch.manual_seed(self.seeds[k])
                if pretrained is None:
                    model = transformers.AutoModelForCausalLM.from_config(config)
                else:
                    model = _load_pretrained(transformers, folders[k])
            if k == 0:
                check_parameter_memory(
                    f"{type(model).__name__} with {self.n_seeds} seeds",
                    self.n_seeds * model.num_parameters(),
                    "lower seeds or the model's size",
                )
            models.append(model.eval())
        self.models = nn.ModuleList(models)
        self.config = config
        # what the installed transformers calls the cache argument: "cache" (5.x) or "past_key_values" (4.x)
        self.cache_argument = "cache" if "cache" in inspect.signature(models[0].forward).parameters else (
            "past_key_values")  # fmt: skip
        self.to(device)

    def train(self, mode: bool = True) -> HFPolicy:
        """Dropout stays off (see the module doc): the models are kept in ``eval`` mode."""
        super().train(mode)
        self.models.eval()
        return self

    @property
    def block_size(self) -> int | None:
        """The longest sequence the model reads (its config's ``max_position_embeddings``, as TinyGPT's
        ``block_size``), or ``None`` for a model without such a limit."""
        return getattr(self.config, "max_position_embeddings", None)

    def spec(self) -> dict:
        """The config (as a dict with its ``model_type``) and the seeds: rebuilds the architecture, not weights."""
        return {"config": self.config.to_dict(), "seeds": list(self.seeds)}

    def embedding_table(self) -> torch.Tensor:
        """``(K, vocab, D)``: each seed's input embedding weights (a view when K = 1)."""
        weights = [model.get_input_embeddings().weight for model in self.models]
        return weights[0].unsqueeze(0) if len(weights) == 1 else torch.stack(weights)

    def embed(self, ids: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``(K, B, T, D)`` encodings of ids ``(B, T)`` / ``(K, B, T)``, from each model's own embedding (no copy of
        the tables) unless ``table`` is given."""
        if table is not None:
            return super().embed(ids, table)
        ids = ids.expand(self.n_seeds, *ids.shape[-2:])
        return torch.stack([F.embedding(ids[k], m.get_input_embeddings().weight) for k, m in enumerate(self.models)])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, T, vocab)`` of token ids ``(B, T)`` / ``(K, B, T)`` or embeddings ``(K, B, T, D)``."""
        if not inputs.is_floating_point():
            inputs = self.embed(inputs)
        x = self.seed_inputs(inputs)
        return torch.stack([model(inputs_embeds=x[k], use_cache=False).logits for k, model in enumerate(self.models)])

    def decode(
        self, inputs: torch.Tensor, positions: torch.Tensor, keys: torch.Tensor, state: list | None = None
    ) -> tuple[torch.Tensor, list]:
        """Logits ``(K, B, t, vocab)`` of ``t`` new input embeddings after the cached ones, as
        :meth:`iftgym.policies.TinyGPT.decode`: ``positions (K, B, t)``, ``keys (K, B, L)`` (the attention mask),
        ``state`` each model's ``past_key_values`` (``None`` at the start)."""
        x = self.seed_inputs(inputs)
        name = self.cache_argument
        outputs = [model(inputs_embeds=x[k], attention_mask=keys[k].long(), position_ids=positions[k],
                         use_cache=True, **{name: None if state is None else state[k]})
                   for k, model in enumerate(self.models)]  # fmt: skip
        return torch.stack([out.logits for out in outputs]), [out[name] for out in outputs]

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Each seed with ``save_pretrained`` (safetensors) into ``folder/seed-<s>``; returns the folders."""
        folders = []
        for seed, model in zip(self.seeds, self.models):
            target = Path(folder) / f"seed-{seed}"
            model.save_pretrained(target, safe_serialization=True)
            folders.append(target)
        return folders


def _load_pretrained(transformers: Any, folder: Path) -> Any:
    """``from_pretrained`` from a local folder of safetensors weights, every failure one ``ValueError``."""
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load a model from {str(folder)!r}: {first}") from None
