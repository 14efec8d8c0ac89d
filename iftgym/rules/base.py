"""The contract between update rules and the training loop.

A rule turns a batch into one loss per seed, shape ``(K,)``; the loop sums them (seeds share no parameters, so
their gradients stay independent) and steps the optimiser. Writing a rule means subclassing :class:`Rule`:

* ``config_class``: a dataclass of the rule's hyper-parameters (none by default); the rule's ``config`` is one;
* ``data``: what the *configured* rule trains on: ``"demos"`` (a :class:`StepBatch` of demonstrations),
  ``"pairs"`` (a :class:`PairBatch`) or ``"env"`` (it samples episodes from the world itself);
* ``loss(policy, batch, step)``: the ``(K,)`` losses and a dict of ``(K,)`` metrics for one optimiser step;
* optionally ``setup`` (once per stage), ``prepare`` (once per stage, on the stage's whole data: compute what
  stays fixed, such as DPO's reference log-probabilities), ``collect`` (before every step's loss: sample what the
  step trains on from the current policy, as PPO's and REINFORCE's rollouts), ``after_step`` (after every
  optimiser step), ``parameters`` (weights the rule trains beside the policy's, such as a critic) and
  ``batch_weight`` (what the loss is a mean over, so that micro-batches and processes add up to the one-batch loss).

The loop calls, per stage: ``setup``, ``prepare``, then for each step ``collect`` and ``loss`` (once per micro-batch
with ``grad_accum``), the optimiser step and ``after_step``.

Every random draw a rule makes comes from ``self.generators[k]`` for seed k (handed over by ``setup``), so a seed
trains the same whatever other seeds train beside it. Register the class with :func:`iftgym.register_rule` to use
it by name everywhere a rule name is accepted.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from iftgym.policies.base import Policy
from iftgym.world import World


@dataclass
class NoConfig:
    """The config of a rule without hyper-parameters of its own (learning rate and steps belong to the loop)."""


class Rule:
    """Base class of every policy-update rule (see the module doc for what a subclass defines).

    Attributes:
        name: the name the rule goes by (the registered name when built by :func:`iftgym.make_rule`).
        config: the rule's hyper-parameters, an instance of ``config_class``.
        world, generators: set by :meth:`setup`: the world being trained in and one generator per seed.
    """

    name: str = "rule"  # subclasses default to their class name, lowercased
    data: str = "demos"
    config_class: ClassVar[type] = NoConfig
    fixed: ClassVar[Mapping[str, Any]] = {}  # config values that define the registered variant (dpo-online)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls):  # a user's rule is called by its class until it is registered under a name
            cls.name = cls.__name__.lower()

    def __init__(self, config: Any = None) -> None:
        self.config = self.config_class(**self.fixed) if config is None else config

    def setup(self, policy: Policy, world: World, generators: Sequence[torch.Generator]) -> None:
        """Called once before a stage (snapshot a reference policy, build a critic, keep the world)."""
        if len(generators) != policy.n_seeds:
            raise ValueError(f"rule {self.name!r} got {len(generators)} generators for {policy.n_seeds} seeds")
        self.world = world
        self.generators = list(generators)

    def prepare(self, policy: Policy, data: Any) -> Any:
        """Called once per stage after :meth:`setup` with the stage's whole data (on the policy's device); returns
        the data the stage's minibatches are drawn from (by default ``data`` itself)."""
        return data

    def collect(self, policy: Policy, step: int) -> None:
        """Called before the loss of every optimiser step ``step`` of the stage: sample what the step trains on
        from the current policy and keep it on the rule, outside the loss's graph (PPO and REINFORCE collect their
        rollouts here, PPO every ``update_epochs`` steps). Does nothing by default."""

    def loss(self, policy: Policy, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-seed loss ``(K,)`` and per-seed metrics for optimiser step ``step`` of the stage."""
        raise NotImplementedError(f"{type(self).__name__} does not define loss()")

    def batch_weight(self, batch: Any) -> torch.Tensor | float:
        """How much ``batch``'s loss counts when the loop adds the losses of several batches into one step (gradient
        accumulation, or the shards of ``torchrun``'s processes): the loss is a mean, so its weight is what it is a
        mean over — the batch's trajectories or pairs by default, its target tokens (per seed: ``(K,)`` when the
        seeds have data of their own) when the rule's config averages over tokens (``average="token"``), and 1 for a
        rule that samples its own episodes (no batch). A rule whose loss is another kind of mean overrides it."""
        if batch is None:
            return 1.0
        if getattr(self.config, "average", None) == "token" and hasattr(batch, "mask"):
            return batch.mask.sum((-2, -1))
        return float(batch.size)

    def after_step(self, policy: Policy) -> None:
        """Called after every optimiser step (IFT re-syncs its frozen encoding table here)."""

    def parameters(self) -> list[nn.Parameter]:
        """Parameters the rule trains beside the policy's (a critic, for instance)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"


def frozen_copy(policy: Policy) -> Policy:
    """A reference policy: a copy of ``policy`` with gradients off."""
    ref = copy.deepcopy(policy)
    ref.requires_grad_(False)
    return ref.eval()
