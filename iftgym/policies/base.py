"""What every policy offers: K independently initialised seeds evaluated at once, inputs given as encodings.

A policy maps input encodings ``(K, B, T, D)`` (or ``(B, T, D)``, shared by all seeds) to action logits
``(K, B, T, A)``. Inputs are rows of an encoding table indexed by input ids, or probability-weighted mixes of
rows (IFT's temporal residual connection), which is why policies take encodings rather than ids. Every policy's
table has the same shape, ``(K, n_ids, D)``: one table per seed (a fixed one-hot table is one table expanded).

A policy is an :class:`iftgym.world.Actor`, the view worlds have of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from iftgym.validate import MAX_SEEDS, at_least, fits_in_memory


def check_seeds(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as a list: an int ``n`` means seeds ``0..n-1``; a list holds distinct non-negative ints."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        at_least("seeds", seeds, 1, note="an int n, or a list of distinct ints", high=MAX_SEEDS)
        return list(range(seeds))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise ValueError(f"seeds={seeds!r} is {type(seeds).__name__}: expected an int n or a list of distinct ints")
    for seed in seeds:
        at_least("seed", seed, 0, note="seeds are non-negative integers")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: expected at least one seed (an int n >= 1 or a list of ints)")
    at_least("number of seeds", len(seeds), 1, high=MAX_SEEDS)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    return seeds


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; anything else is checked and passed to :class:`torch.device`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={str(device)!r} is not supported: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was asked for, but CUDA is not available here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r} does not exist: this machine has {torch.cuda.device_count()} GPUs")
    return device


def check_parameter_memory(name: str, n_parameters: int, advice: str) -> None:
    """Refuse a policy whose training state (weights, gradients and two Adam moments, float32) would not fit."""
    fits_in_memory(f"{name} ({n_parameters:,} parameters)", 16 * n_parameters, advice)


class Policy(nn.Module):
    """Base class: ``seeds`` name the K models, ``encodings`` (n_ids x D) is the input table."""

    markov: bool = True  # logits at step t depend on the input at step t only (False for sequence models)
    # token passes computed so far, per seed: every input position a forward pass reads, counted again when the pass
    # records a graph for a backward pass (what an equal-compute budget counts; ``seed_inputs`` counts them)
    token_passes: int = 0
    counting: bool = True

    def __init__(self, seeds: int | Sequence[int], n_actions: int) -> None:
        super().__init__()
        self.seeds = check_seeds(seeds)
        at_least("n_actions", n_actions, 1)
        self.n_actions = n_actions

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def device(self) -> torch.device:
        return self.embedding_table().device

    def spec(self) -> dict:
        """The constructor's keyword arguments (JSON-serialisable): ``type(self)(**self.spec())`` rebuilds the
        policy's architecture and seeds, which is what :mod:`iftgym.policies.checkpoint` stores beside the weights."""
        raise NotImplementedError(f"{type(self).__name__} does not define spec(), so it cannot be checkpointed")

    def embedding_table(self) -> torch.Tensor:
        """The ``(K, n_ids, D)`` tables whose rows encode input ids, one per seed."""
        raise NotImplementedError

    def embed(self, ids: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Each seed's encodings of input ids ``(B, T)`` or ``(K, B, T)``: ``(K, B, T, D)``, read from ``table``
        (shaped like :meth:`embedding_table`, such as IFT's frozen copy) or, by default, the policy's own."""
        table = self.embedding_table() if table is None else table
        if ids.dim() == 2:
            return table[:, ids]
        return table[torch.arange(self.n_seeds, device=ids.device)[:, None, None], ids]

    def embed_distribution(self, probs: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """The probability-weighted mix of encodings of a distribution over input ids: ``(K, B, T, n_ids)`` ->
        ``(K, B, T, D)`` (how IFT encodes where a predicted action leads)."""
        table = self.embedding_table() if table is None else table
        return probs.to(table.dtype) @ table.unsqueeze(-3)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Action logits ``(K, B, T, A)`` for input encodings ``(K, B, T, D)`` or ``(B, T, D)``."""
        raise NotImplementedError

    def logits_at(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, T, A)`` at input ids ``(B, T)`` or ``(K, B, T)``.

        A Markov policy is evaluated once per distinct id and the result gathered, which is much cheaper than
        a forward pass per step of every trajectory; sequence models run on the embedded ids.
        """
        if not self.markov:
            return self(self.embed(ids))
        counted, self.counting = self.counting, False  # the table is a shortcut: count the positions asked for
        try:
            table = self.id_logits()
        finally:
            self.counting = counted
        self.count_positions(ids.shape[-2] * ids.shape[-1])
        ids = ids.expand(self.n_seeds, *ids.shape[-2:])
        return table[torch.arange(self.n_seeds, device=ids.device)[:, None, None], ids]

    def id_logits(self) -> torch.Tensor:
        """``(K, n_ids, A)``: the logits at every input id of a Markov policy, as :meth:`forward` gives them for the
        encoding table, read straight from the weights (:meth:`direct_id_logits`) unless a forward hook watches the
        policy's passes (:func:`iftgym.metrics.update.forward_outputs` does)."""
        hooked = self._forward_hooks or self._forward_pre_hooks or _global_forward_hooks or _global_forward_pre_hooks
        direct = None if hooked else self.direct_id_logits()
        return self(self.embedding_table().unsqueeze(1))[:, 0] if direct is None else direct

    def direct_id_logits(self) -> torch.Tensor | None:
        """:meth:`id_logits` without a forward pass, or ``None`` (the default) for a policy without that shortcut.
        A policy whose one-hot input picks a row of its first weights overrides it: the same numbers, without the
        product with the encoding table, a third of a small policy's training step. It counts the ids it reads
        (:meth:`count_positions`) as the forward pass would."""
        return None

    def step(self, inputs: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One more step of every sequence: logits ``(K, B, A)`` for step inputs ``(K, B, D)``, given what
        ``step`` returned as ``state`` for the steps before (``None`` at the start), and the new state. How a world
        samples a policy with memory step by step; a Markov policy needs no state."""
        if not self.markov:
            raise NotImplementedError(f"{type(self).__name__} has memory but no step(): it cannot be rolled out")
        return self(inputs.unsqueeze(2))[:, :, 0], None

    def seed_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Give shared inputs ``(B, T, D)`` a leading seed axis so every seed sees them, and count the positions read
        (:attr:`token_passes`; twice where the pass records a graph: its backward pass reads them again)."""
        self.count_positions(inputs.shape[-3] * inputs.shape[-2])
        if inputs.dim() == 3:
            return inputs.unsqueeze(0).expand(self.n_seeds, *inputs.shape)
        if inputs.shape[0] != self.n_seeds:
            raise ValueError(f"inputs have {inputs.shape[0]} seeds on axis 0, the policy has {self.n_seeds}")
        return inputs

    def count_positions(self, positions: int) -> None:
        """Add ``positions`` read by one forward pass to :attr:`token_passes` (twice with gradients on)."""
        if self.counting:
            self.token_passes += positions * (2 if torch.is_grad_enabled() else 1)

    @torch.no_grad()
    def action_probs(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(K, n_ids, A)``: the action distribution at every input id (for Markov policies: the policy matrix),
        computed in ``dtype``, or in the policy's own dtype where that is wider."""
        if not self.markov:
            raise ValueError(f"{type(self).__name__} is not Markov: its policy is not a table over input ids")
        logits = self.id_logits()
        return torch.softmax(logits.to(torch.promote_types(logits.dtype, dtype)), dim=-1)

    def seed_generator(self, index: int) -> torch.Generator:
        """The generator that initialises seed number ``index``, so a seed's start does not depend on K."""
        return torch.Generator().manual_seed(self.seeds[index])
