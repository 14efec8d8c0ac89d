"""Suite-wide settings and the fixtures that test modules in several folders share.

The models under test are tiny, and torch's intra-op threads only add overhead there (on a shared 2-core machine a
single thread was up to 20x faster), so every test runs single-threaded."""

from __future__ import annotations

import pytest
import torch

from iftgym import FrozenLakeMDP, PairBatch, PreferencePair, StepBatch
from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.types import TrainingData
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.jsonl import JSONLTask
from iftgym.worlds.tokens.tasks import AdditionTask


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- Frozen Lake: the paper map and its training data ------------------------------------------------------------
@pytest.fixture(scope="module")
def paper() -> FrozenLakeMDP:
    return FrozenLakeMDP.from_map("paper")


@pytest.fixture(scope="module")
def data(paper: FrozenLakeMDP) -> TrainingData:
    """The paper map's optimal demonstration, and the preference pair (optimal over the detour)."""
    demo, sub = paper.optimal_demonstration(), paper.suboptimal_demonstration()
    return TrainingData(
        demos=StepBatch.from_trajectories(paper, [demo]),
        pairs=PairBatch.from_pairs(paper, [PreferencePair(demo, sub)]),
    )


# -- the token world and a TinyGPT sized for it --------------------------------------------------------------------
@pytest.fixture(scope="module")
def world() -> TokenWorld:
    """Two-digit addition: 40 training and 10 test prompts, all of one length."""
    return TokenWorld(AdditionTask(digits=2, n_train=40, n_test=10, seed=1))


@pytest.fixture(scope="module")
def reverse() -> TokenWorld:
    """User data with prompts of different lengths."""
    return TokenWorld(JSONLTask("reverse_preference"))


def make_tiny_gpt(world: TokenWorld, seeds=2) -> TinyGPT:
    """A one-layer TinyGPT sized for ``world``, on the CPU."""
    return TinyGPT(world.n_ids, world.block_size, n_layer=1, n_head=2, n_embd=16, seeds=seeds, device="cpu")


@pytest.fixture
def tiny():
    """``tiny(world, seeds=2)``: a one-layer TinyGPT sized for ``world``, on the CPU."""
    return make_tiny_gpt
