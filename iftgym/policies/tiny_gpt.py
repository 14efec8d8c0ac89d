"""TinyGPT: a small nanoGPT-style causal transformer, K seeds batched as one model.

Every weight has a leading seed axis (``(K, in, out)`` for a linear layer), so K independently initialised GPTs
run in the same matrix products, like :class:`iftgym.policies.mlp.MLPPolicy`. Seed s is initialised from its own
generator, so it starts from the same weights whether it is trained alone or beside others.

Pre-LayerNorm blocks (causal self-attention, then a GELU MLP), learned position embeddings added inside the model,
untied input embedding and output head, no dropout. The input embedding is the only encoding IFT mixes: the model
takes token ids or input embeddings ``(K, B, T, D)`` (position embeddings are added after the mix, as in Hugging
Face models fed ``inputs_embeds``). On CUDA the forward pass runs under bf16 autocast.

The architecture is a :class:`TinyGPTConfig` (as nanoGPT's ``GPTConfig``): ``TinyGPT.from_config(config, seeds)``,
or the sizes as arguments, ``TinyGPT(vocab_size, block_size, n_layer, n_head, n_embd, seeds=...)``. Answers are
decoded by :func:`iftgym.decoding.generate`, with the key-value cache of :meth:`TinyGPT.decode`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from iftgym.decoding import generate
from iftgym.policies.base import Policy, check_parameter_memory, resolve_device
from iftgym.validate import at_least

INIT_STD = 0.02
KeyValues = tuple[torch.Tensor, torch.Tensor]  # one block's key and value buffers, (K*B, heads, block_size, D/heads)


@dataclass(frozen=True)
class TinyGPTConfig:
    """The architecture of a :class:`TinyGPT` (one seed's; as nanoGPT's ``GPTConfig``), checked when built.

    Args:
        vocab_size: number of tokens (input ids and actions).
        block_size: longest sequence the model reads (number of position embeddings).
        n_layer, n_head, n_embd: depth, attention heads and width (``n_embd`` divisible by ``n_head``).
    """

    vocab_size: int
    block_size: int
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            at_least(name, getattr(self, name), 1)
            object.__setattr__(self, name, int(getattr(self, name)))  # a numpy integer too, so the spec is JSON
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: expected n_embd a "
                             "multiple of n_head (each head reads n_embd / n_head dimensions)")  # fmt: skip

    @property
    def parameters_per_seed(self) -> int:
        """Weights of one seed: embeddings, blocks (attention, MLP, two layer norms), final norm and head."""
        per_block = 12 * self.n_embd * self.n_embd + 13 * self.n_embd
        return (2 * self.vocab_size + self.block_size + 2) * self.n_embd + self.vocab_size + self.n_layer * per_block


class SeedLinear(nn.Module):
    """``y = x @ W[k] + b[k]`` for seed k; weights ``(K, n_in, n_out)`` drawn from N(0, std)."""

    def __init__(self, n_seeds: int, n_in: int, n_out: int, std: float = INIT_STD) -> None:
        super().__init__()
        self.std = std
        self.weight = nn.Parameter(torch.empty(n_seeds, n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_seeds, n_out))

    def init_seed(self, k: int, generator: torch.Generator) -> None:
        self.weight.data[k] = torch.randn(self.weight.shape[1:], generator=generator) * self.std
        self.bias.data[k] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(K, B, T, n_in) -> (K, B, T, n_out)``: one batched matrix product with the bias fused in."""
        K, B, T, n_in = x.shape
        return torch.baddbmm(self.bias[:, None], x.reshape(K, B * T, n_in), self.weight).view(K, B, T, -1)


class SeedLayerNorm(nn.Module):
    """Layer normalisation with a weight and bias per seed."""

    def __init__(self, n_seeds: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_seeds, dim))
        self.bias = nn.Parameter(torch.zeros(n_seeds, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight[:, None, None] + self.bias[:, None, None]


class Block(nn.Module):
    """``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, n_seeds: int, config: TinyGPTConfig) -> None:
        super().__init__()
        n_embd, self.n_head = config.n_embd, config.n_head
        residual_std = INIT_STD / math.sqrt(2 * config.n_layer)  # GPT-2's scaled init of the residual projections
        self.ln_1 = SeedLayerNorm(n_seeds, n_embd)
        self.c_attn = SeedLinear(n_seeds, n_embd, 3 * n_embd)
        self.attn_proj = SeedLinear(n_seeds, n_embd, n_embd, residual_std)
        self.ln_2 = SeedLayerNorm(n_seeds, n_embd)
        self.c_fc = SeedLinear(n_seeds, n_embd, 4 * n_embd)
        self.mlp_proj = SeedLinear(n_seeds, 4 * n_embd, n_embd, residual_std)

    def attention(
        self, x: torch.Tensor, cache: KeyValues | None = None, mask: torch.Tensor | None = None, capacity: int = 0
    ) -> tuple[torch.Tensor, KeyValues | None]:
        """Causal self-attention of ``x (K, B, T, D)``. Decoding (``mask (K*B, 1, T, L)``: which of the ``L`` tokens
        so far each query sees), the new keys and values go into ``cache``, buffers of ``capacity`` positions
        (allocated on the first call) holding those of the ``L - T`` earlier tokens; returns the output and the
        buffers."""
        K, B, T, D = x.shape
        q, k, v = self.c_attn(x).split(D, dim=-1)
        # (K, B, T, D) -> (K*B, heads, T, D/heads)
        q, k, v = (t.reshape(K * B, T, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # written in place: no copy of the earlier keys per new token
            end = mask.shape[-1]
            if cache is None or cache[0].shape[2] < end:  # allocate, or double (left padding can outgrow one)
                grown = tuple(t.new_empty(K * B, self.n_head, max(capacity, 2 * end), D // self.n_head) for t in (k, v))
                if cache is not None:
                    for old, new in zip(cache, grown):
                        new[:, :, : end - T] = old[:, :, : end - T]
                cache = grown
            cache[0][:, :, end - T : end], cache[1][:, :, end - T : end] = k, v
            y = F.scaled_dot_product_attention(q, cache[0][:, :, :end], cache[1][:, :, :end], attn_mask=mask)
        return self.attn_proj(y.transpose(1, 2).reshape(K, B, T, D)), cache

    def forward(
        self, x: torch.Tensor, cache: KeyValues | None = None, mask: torch.Tensor | None = None, capacity: int = 0
    ) -> tuple[torch.Tensor, KeyValues | None]:
        attended, cache = self.attention(self.ln_1(x), cache, mask, capacity)
        x = x + attended
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)))), cache


class TinyGPT(Policy):
    """A causal transformer language model as a policy: one action per token.

    Args:
        vocab_size, block_size, n_layer, n_head, n_embd: the architecture (:class:`TinyGPTConfig`, kept as
            ``self.config``; :meth:`from_config` takes one).
        seeds: K seeds, or their count.
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``...
    """

    markov = False
    kv_cache = True  # decode() reads one new token at a time after the cached ones

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 64,
        seeds: int | Sequence[int] = 1,
        device: str | torch.device = "auto",
    ) -> None:
        super().__init__(seeds, vocab_size)
        config = TinyGPTConfig(vocab_size, block_size, n_layer, n_head, n_embd)
        device = resolve_device(device)
        check_parameter_memory(f"TinyGPT with {self.n_seeds} seeds, n_layer={n_layer}, n_embd={n_embd}",
                               self.n_seeds * config.parameters_per_seed, "lower seeds, n_layer or n_embd")  # fmt: skip
        self.config = config
        self.vocab_size, self.block_size = config.vocab_size, config.block_size
        K = self.n_seeds
        self.wte = nn.Parameter(torch.empty(K, vocab_size, n_embd))
        self.wpe = nn.Parameter(torch.empty(K, block_size, n_embd))
        self.blocks = nn.ModuleList(Block(K, config) for _ in range(n_layer))
        self.ln_f = SeedLayerNorm(K, n_embd)
        self.head = SeedLinear(K, n_embd, vocab_size)
        linears = [m for m in self.modules() if isinstance(m, SeedLinear)]
        for k in range(K):
            gen = self.seed_generator(k)
            for table in (self.wte, self.wpe):
                table.data[k] = torch.randn(table.shape[1:], generator=gen) * INIT_STD
            for linear in linears:
                linear.init_seed(k, gen)
        self.to(device)

    @classmethod
    def from_config(
        cls, config: TinyGPTConfig, seeds: int | Sequence[int] = 1, device: str | torch.device = "auto"
    ) -> TinyGPT:
        """K seeds of the architecture ``config``."""
        return cls(**asdict(config), seeds=seeds, device=device)

    def spec(self) -> dict:
        """Constructor arguments that rebuild this architecture and seeds (the device is chosen on loading)."""
        return {**asdict(self.config), "seeds": list(self.seeds)}

    def embedding_table(self) -> torch.Tensor:
        """The token embedding weights, one ``(vocab, D)`` table per seed."""
        return self.wte

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, T, vocab)`` of token ids ``(B, T)`` / ``(K, B, T)`` or embeddings ``(K, B, T, D)``."""
        if not inputs.is_floating_point():
            inputs = self.embed(inputs)
        x = self.seed_inputs(inputs)
        length = x.shape[-2]
        if length > self.block_size:
            raise ValueError(f"sequence of {length} tokens is longer than block_size={self.block_size}")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            x = x + self.wpe[:, None, :length]
            for block in self.blocks:
                x, _ = block(x)
            return self.head(self.ln_f(x))

    def decode(
        self,
        inputs: torch.Tensor,
        positions: torch.Tensor,
        keys: torch.Tensor,
        state: list[KeyValues] | None = None,
    ) -> tuple[torch.Tensor, list[KeyValues]]:
        """Logits ``(K, B, t, vocab)`` of ``t`` new input embeddings ``(K, B, t, D)`` after the cached ones (``state``,
        ``None`` at the start), with each token's ``positions (K, B, t)`` and which of all ``L`` tokens so far are
        real (``keys (K, B, L)``; padding is not attended to). Returns the logits and the new cache.
        How :func:`iftgym.decoding.generate` decodes in O(1) forward work per new token."""
        if int(positions.max()) >= self.block_size:
            raise ValueError(f"position {int(positions.max())} is beyond block_size={self.block_size}")
        x = self.seed_inputs(inputs)
        K, B, t, _ = x.shape
        L = keys.shape[-1]
        mask = keys.reshape(K * B, 1, 1, L)
        if t == 1:  # one new token sees every real token so far, and itself (a padding query too: no NaN)
            mask = mask.clone()
            mask[..., -1] = True
        else:
            query_at = torch.arange(L - t, L, device=x.device)
            causal = torch.arange(L, device=x.device)[None, :] <= query_at[:, None]  # (t, L)
            own = torch.arange(L, device=x.device)[None, :] == query_at[:, None]
            mask = (mask & causal) | own
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            x = x + self.wpe[torch.arange(K, device=x.device)[:, None, None], positions]
            cache = []
            for block, past in zip(self.blocks, state or [None] * len(self.blocks)):
                x, kv = block(x, past, mask, self.block_size)
                cache.append(kv)
            return self.head(self.ln_f(x)), cache

    def generate(
        self,
        prompts: torch.Tensor,
        lengths: torch.Tensor | None = None,
        max_new_tokens: int = 16,
        greedy: bool = True,
        temperature: float = 1.0,
        generators: Sequence[torch.Generator] | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Greedy or sampled continuations ``(K, B, max_new_tokens)`` of right-padded prompts ``(B, P)``
        (``lengths``: their real lengths, default all ``P``); ``<pad>`` follows an ``<eos>``. Sampling takes one
        generator per seed (see :func:`iftgym.world.seed_generators`); ``options`` (``top_k``, ``top_p``, ``eos``,
        ``pad``, ``cache``) are those of :func:`iftgym.decoding.generate`."""
        if lengths is None:
            lengths = torch.full((prompts.shape[0],), prompts.shape[1], dtype=torch.long)
        return generate(self, prompts, lengths, max_new_tokens, greedy, temperature, generators, **options)
