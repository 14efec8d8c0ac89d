"""Fixtures shared by the update rules' tests: the paper map's preference pair, random generators and gradients."""

from __future__ import annotations

import pytest
import torch

from iftgym import FrozenLakeMDP, PairBatch, PreferencePair
from iftgym.policies import MLPPolicy
from iftgym.world import seed_generators


@pytest.fixture(scope="module")
def pairs(paper: FrozenLakeMDP) -> PairBatch:
    return PairBatch.from_pairs(
        paper, [PreferencePair(paper.optimal_demonstration(), paper.suboptimal_demonstration())]
    )


def make_generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_generators(policy: MLPPolicy, seed: int = 0) -> list[torch.Generator]:
    """One generator per seed of ``policy``, as the training loop hands a rule."""
    return seed_generators(seed, policy.seeds)


def parameter_grads(policy, loss: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of ``loss`` (summed over seeds) with respect to every parameter of ``policy``."""
    return list(torch.autograd.grad(loss.sum(), list(policy.parameters())))


@pytest.fixture
def generator():
    """``generator(seed=0)``: a fresh torch generator seeded with ``seed``."""
    return make_generator


@pytest.fixture
def generators():
    """``generators(policy, seed=0)``: one generator per seed of ``policy``, as the training loop hands a rule."""
    return make_generators


@pytest.fixture
def grads():
    """``grads(policy, loss)``: the gradient of ``loss`` (summed over seeds) for every parameter of ``policy``."""
    return parameter_grads
