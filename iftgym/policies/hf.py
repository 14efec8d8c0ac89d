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
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iftgym.policies.base import Policy, check_parameter_memory, check_seeds, resolve_device
from iftgym.worlds.tokens.hf_tokenizer import import_transformers


def model_config(config: Any) -> Any:
    """A ``transformers`` config from a config object or a dict with a ``model_type`` (``{"model_type": "gpt2",
    "n_layer": 2, ...}``); anything else is one short ``ValueError``."""
    transformers = import_transformers()
    if isinstance(config, transformers.PretrainedConfig):
        return config
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ValueError(f"config={_cut(repr(config))} is not a model config: expected a transformers config or a "
                         "dict with a 'model_type' such as 'gpt2'")  # fmt: skip
    settings = dict(config)
    kind = settings.pop("model_type")
    if kind not in transformers.CONFIG_MAPPING:
        raise ValueError(f"model_type {_cut(repr(kind))} is unknown to transformers {transformers.__version__}: "
                         "expected a model type it knows, such as gpt2, llama, qwen2")  # fmt: skip
    try:
        return transformers.AutoConfig.for_model(kind, **settings)
    except Exception as err:  # user input: transformers and huggingface_hub raise classes of their own
        why = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"cannot build a {kind} config from {_cut(str(config))}: {_cut(why)}") from None


ROTARY = ("rope_parameters", "rope_theta", "rope_scaling", "rotary_dim", "rotary_pct")  # set: rotary positions


def _size(config: Any, *names: str) -> int | None:
    """The first of ``names`` that ``config`` sets to a positive finite number, as an int (``None`` if none does):
    a size read for an estimate, whatever its type (the model's own checks judge the type)."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return int(value)
    return None


def estimate_parameters(config: Any) -> int:
    """An upper bound of the parameter count of the causal LM ``config`` describes, read from the config alone (no
    weights are built): token embeddings and an untied head (``vocab_size x hidden_size`` each; one table when
    ``tie_word_embeddings``), learned positions
    (``max_position_embeddings x hidden_size``, none for rotary positions), and per layer the attention
    projections (grouped key-value heads as set), a gated MLP (three ``hidden x intermediate`` matrices, GPT-2 has
    two; times the experts of a mixture), biases and norms. Close for GPT-2- and Llama-like models, never below."""
    hidden = _size(config, "hidden_size", "n_embd", "d_model") or 0
    layers = _size(config, "num_hidden_layers", "n_layer", "num_layers") or 0
    vocab = _size(config, "vocab_size") or 0
    positions = _size(config, "max_position_embeddings", "n_positions") or 0
    if any(getattr(config, name, None) is not None for name in ROTARY):  # positions rotate: no table of them
        positions = 0
    inner = _size(config, "intermediate_size", "n_inner", "ffn_dim", "d_ff") or 4 * hidden
    experts = _size(config, "num_local_experts", "num_experts", "n_routed_experts") or 1
    heads = _size(config, "num_attention_heads", "n_head")
    head_dim = _size(config, "head_dim") or (hidden // heads if heads else hidden)
    query = max(hidden, (heads or 1) * head_dim)
    key_value = max(query, (_size(config, "num_key_value_heads") or 0) * head_dim)
    attention = 2 * hidden * query + 2 * hidden * key_value + 2 * query + 2 * key_value
    mlp = experts * (3 * hidden * inner + inner + 2 * hidden)
    per_layer = attention + mlp + 8 * hidden
    tables = 1 if getattr(config, "tie_word_embeddings", False) is True else 2  # the head shares the embedding
    return layers * per_layer + tables * vocab * hidden + positions * hidden + 4 * hidden + vocab


def check_config_memory(config: Any, n_seeds: int) -> None:
    """Refuse, before any weights are built, a config whose K seeds' training state would not fit in memory (the
    parameter count :func:`estimate_parameters` reads from the config)."""
    kind = getattr(config, "model_type", None) or "model"
    seeds = f"{n_seeds} seed" + ("s" if n_seeds != 1 else "")
    advice = "lower seeds or the config's sizes (n_layer/num_hidden_layers, hidden size, vocab_size)"
    check_parameter_memory(f"a {kind} config with {seeds}", n_seeds * estimate_parameters(config), advice)


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
            config = pretrained_config(folders[0])
        config = model_config(config)
        check_config_memory(config, len(check_seeds(seeds)))  # before any weights are built
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
    def n_ids(self) -> int:
        """The input ids the model reads (its input embedding's rows), without stacking the seeds' tables."""
        return self.models[0].get_input_embeddings().weight.shape[0]

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


def _cut(text: str, limit: int = 100) -> str:
    """``text`` as echoed in an error message: at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(err: BaseException) -> str:
    """The first line of an error's message (its class name if it has none), cut to a readable length."""
    text = str(err).strip()
    return _cut(text.splitlines()[0] if text else type(err).__name__)


def pretrained_config(folder: str | os.PathLike) -> Any:
    """A model folder's ``config.json`` as a ``transformers`` config (nothing else is read), every failure one
    ``ValueError``."""
    transformers, folder = import_transformers(), Path(folder)
    try:
        return transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"cannot read the model config {str(folder / 'config.json')!r}: {_first_line(err)}") from None


def _load_pretrained(transformers: Any, folder: Path) -> Any:
    """``from_pretrained`` from a local folder of safetensors weights (never a pickle), every failure one
    ``ValueError``; a weights file that is not safetensors (a pickle renamed, a truncated file) is named."""
    from safetensors import SafetensorError, safe_open

    try:
        return transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except SafetensorError as err:
        for path in sorted(folder.glob("*.safetensors")):  # which file: each header read, no tensor loaded
            try:
                with safe_open(path, framework="pt"):
                    pass
            except (SafetensorError, OSError) as bad:
                raise ValueError(f"{str(path)!r} is not a valid safetensors file ({_first_line(bad)}): expected "
                                 "weights written by save_pretrained; pickles are never loaded") from None  # fmt: skip
        raise ValueError(f"cannot load a model from {str(folder)!r}: a weights file is not a valid safetensors file "
                         f"({_first_line(err)})") from None  # fmt: skip
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"cannot load a model from {str(folder)!r}: {_first_line(err)}") from None
