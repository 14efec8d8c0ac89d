"""The contract between update rules and the training loop.

A rule turns a batch into one loss per seed, shape ``(K,)``; the loop sums them (seeds share no parameters, so
their gradients stay independent) and steps the optimiser. ``data`` says what the rule trains on:
``"demos"`` (a :class:`StepBatch` of demonstrations), ``"pairs"`` (a :class:`PairBatch`) or ``"env"`` (it samples
episodes from the world itself and needs no dataset).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn

from iftgym.mdp import MDP
from iftgym.policies.base import Policy


class Rule:
    name: ClassVar[str]
    data: ClassVar[str]  # "demos", "pairs" or "env"

    def setup(self, policy: Policy, world: MDP, generator: torch.Generator) -> None:
        """Called once before training (snapshot a reference policy, build a critic, keep the world)."""
        self.world = world
        self.generator = generator

    def loss(self, policy: Policy, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-seed loss ``(K,)`` and per-seed metrics for one optimiser step."""
        raise NotImplementedError

    def after_step(self, policy: Policy) -> None:
        """Called after every optimiser step (IFT re-syncs its frozen encoding table here)."""

    def parameters(self) -> list[nn.Parameter]:
        """Parameters the rule trains beside the policy's (a critic, for instance)."""
        return []


def frozen_copy(policy: Policy) -> Policy:
    """A reference policy: a copy of ``policy`` with gradients off."""
    ref = copy.deepcopy(policy)
    ref.requires_grad_(False)
    return ref.eval()
