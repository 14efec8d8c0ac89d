"""The World contract: exactly what update rules, the training loop, the estimators and the metrics ask of a world.

Frozen Lake (:class:`iftgym.worlds.frozen_lake.FrozenLakeMDP`) and token generation
(:class:`iftgym.worlds.tokens.TokenWorld`) implement all of it; nothing in the toolkit asks a world for anything
else or looks at its type. A new world is a class with these members (``docs/design.md`` §5 walks through one).

A world never imports a policy class: it sees a policy through :class:`Actor`, the few members it needs to roll
the policy out. Randomness always comes from one ``torch.Generator`` per seed of the policy (see
:func:`seed_generators`), and a world draws for seed k from ``generators[k]`` only, so what seed k samples never
depends on how many seeds are trained beside it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from iftgym.types import StepBatch, TrainingData

State = Hashable


@runtime_checkable
class Actor(Protocol):
    """Everything a world (and the decoder, :mod:`iftgym.decoding`) calls on a policy of K seeds; every
    :class:`iftgym.policies.Policy` is one. A policy with ``kv_cache = True`` also has ``decode(inputs, positions,
    keys, state) -> (logits, state)``, which :func:`iftgym.decoding.generate` then uses to read one new token per
    step (TinyGPT, Hugging Face models); without it, generation recomputes the whole prefix with ``logits_at``."""

    markov: bool  # logits at step t depend on the input at step t only (a policy matrix exists)
    seeds: list[int]  # the K seeds, each with its own initialisation and random stream

    @property
    def n_seeds(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def logits_at(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B, T, A)`` at input ids ``(B, T)`` or ``(K, B, T)``."""
        ...

    def action_probs(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(K, n_ids, A)``: a Markov policy's action distribution at every input id, computed in ``dtype``."""
        ...

    def embed(self, ids: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Each seed's encodings ``(K, B, T, D)`` of input ids ``(B, T)`` or ``(K, B, T)``."""
        ...

    def step(self, inputs: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step of every sequence: logits ``(K, B, A)`` for step encodings ``(K, B, D)`` and the state before
        (``None`` at the start), and the new state (how a world rolls out a policy with memory)."""
        ...


@runtime_checkable
class World(Protocol):
    """An MDP that rules can train in and metrics can measure.

    Attributes:
        n_ids: size of the policy-input vocabulary (cells, or tokens).
        n_actions: number of actions.
        deterministic: whether every transition has a single successor (a demonstration's prefix is then the only
            way to reach its states, and estimators measure reach along it).
    """

    n_ids: int
    n_actions: int
    deterministic: bool

    def input_id(self, state: State) -> int:
        """The id whose encoding represents ``state`` at the policy's input."""
        ...

    def action_name(self, action: int) -> str:
        """A readable name of an action (for messages and tables)."""
        ...

    def successor_probs(self, ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """For input ids and actions of shape ``(...)``, the distribution ``(..., n_ids)`` of the next input id
        (IFT encodes where a predicted action leads with it)."""
        ...

    def sample(
        self, policy: Actor, n_episodes: int, generators: Sequence[torch.Generator], max_steps: int | None = None
    ) -> StepBatch:
        """``n_episodes`` on-policy episodes per seed as a ``(K, n_episodes, T)`` batch on the policy's device, seed
        k drawing from ``generators[k]`` alone; rewards are the world's."""
        ...

    def sample_like(
        self, policy: Actor, demos: StepBatch, n_per: int, generators: Sequence[torch.Generator]
    ) -> StepBatch:
        """``n_per`` on-policy episodes per seed from the start (the prompt) of each trajectory of ``demos``: a
        ``(K, size * n_per, T)`` batch, episodes ``b * n_per ... (b + 1) * n_per - 1`` starting where trajectory b
        does (what online DPO contrasts each demonstration with)."""
        ...

    def training_data(self) -> TrainingData:
        """The world's own demonstrations and (where it has them) preference pairs."""
        ...

    def reach_probs(self, policy: Actor, batch: StepBatch) -> torch.Tensor:
        """``(K, B, T)`` float64: the exact probability that the policy's own rollout is in state ``ids[t]`` at time
        t (by any route). On a deterministic world this is the product of the policy's probabilities of the
        batch's earlier actions."""
        ...

    def scores(self, policy: Actor) -> dict[str, np.ndarray]:
        """The world's measures of a policy, one ``(K,)`` array each (exact where the world can be solved)."""
        ...


def seed_generators(seed: int, seeds: Sequence[int], *streams: int) -> list[torch.Generator]:
    """One CPU generator per policy seed: generator k depends on ``(seed, seeds[k], *streams)`` only.

    ``seed`` is the run's seed, ``seeds`` the policy's seeds, ``streams`` separate independent uses (a training
    stage, an evaluation). Seeding goes through NumPy's ``SeedSequence``, so nearby integers give unrelated
    streams.
    """
    generators = []
    for policy_seed in seeds:
        entropy = [int(seed), int(policy_seed), *map(int, streams)]
        if min(entropy) < 0:
            raise ValueError(f"seeds must be non-negative integers, got {entropy}")
        state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
        generators.append(torch.Generator().manual_seed(int(state)))
    return generators
