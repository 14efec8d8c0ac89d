"""The World contract: both worlds implement every member, and randomness comes from one generator per seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP, MLPPolicy, StepBatch, TinyGPT, TokenWorld, TrainingData, World, seed_generators
from iftgym.world import Actor
from iftgym.worlds.tokens.tasks import SortTask

CONTRACT = [name for name in World.__annotations__] + [
    name for name in vars(World) if not name.startswith("_") and callable(getattr(World, name))
]


def frozen_lake() -> tuple[FrozenLakeMDP, MLPPolicy]:
    world = FrozenLakeMDP.from_map("paper", slippery=True, success_rate=0.6)
    return world, MLPPolicy(world.n_ids, world.n_actions, hidden=8, seeds=3)


def tokens() -> tuple[TokenWorld, TinyGPT]:
    world = TokenWorld(SortTask(length=3, n_train=12, n_test=4))
    return world, TinyGPT(world.n_ids, world.block_size, n_layer=1, n_head=2, n_embd=16, seeds=3, device="cpu")


@pytest.mark.parametrize("make", [frozen_lake, tokens], ids=["frozen-lake", "tokens"])
def test_both_worlds_implement_every_member_of_the_contract(make) -> None:
    world, policy = make()
    assert isinstance(world, World) and isinstance(policy, Actor)
    assert {"n_ids", "n_actions", "deterministic", "sample", "training_data", "reach_probs", "scores"} <= set(CONTRACT)
    assert isinstance(world.deterministic, bool) and isinstance(world.action_name(1), str)
    data = world.training_data()
    assert isinstance(data, TrainingData) and data.demos is not None
    batch = world.sample(policy, 5, seed_generators(0, policy.seeds))
    assert isinstance(batch, StepBatch) and batch.ids.shape[:2] == (3, 5)
    ids, actions = batch.ids[..., :-1], batch.actions[..., :-1]
    successor = world.successor_probs(ids, actions)
    assert successor.shape == (*ids.shape, world.n_ids)
    torch.testing.assert_close(successor.sum(-1), torch.ones(ids.shape))
    reach = world.reach_probs(policy, data.demos)
    assert reach.shape == (3, *data.demos.ids.shape) and reach.dtype == torch.float64
    assert ((reach >= 0) & (reach <= 1 + 1e-12)).all()
    scores = world.scores(policy)
    assert scores and all(np.shape(v) == (3,) for v in scores.values())


@pytest.mark.parametrize("make", [frozen_lake, tokens], ids=["frozen-lake", "tokens"])
def test_a_seeds_samples_do_not_depend_on_the_other_seeds(make) -> None:
    world, policy = make()
    state = {k: v[1:2] for k, v in policy.state_dict().items() if v.dim() and v.shape[0] == 3}
    alone = type(policy)(**{**policy.spec(), "seeds": [policy.seeds[1]]})
    alone.load_state_dict({**alone.state_dict(), **state})
    together = world.sample(policy, 6, seed_generators(4, policy.seeds))
    single = world.sample(alone, 6, seed_generators(4, alone.seeds))
    length = single.ids.shape[-1]
    for name, a, b in zip(("ids", "actions", "mask", "rewards"), single.tensors(), together.tensors()):
        torch.testing.assert_close(a[0], b[1, :, :length], msg=name)
        assert not b[1, :, length:].any() or name == "ids", name  # only padding beyond seed 1's own episodes


def test_seed_generators_depend_on_the_run_seed_the_policy_seed_and_the_stream_only() -> None:
    def draw(gens):
        return [torch.rand(3, generator=g).tolist() for g in gens]

    a, b = draw(seed_generators(0, [1, 2])), draw(seed_generators(0, [2, 7, 1]))
    assert a[0] == b[2] and a[1] == b[0]  # seed 1 and seed 2 draw the same whatever their company
    assert draw(seed_generators(1, [1]))[0] != a[0]  # another run seed
    assert draw(seed_generators(0, [1], 1))[0] != a[0]  # another stream
    assert draw(seed_generators(0, [10]))[0] != draw(seed_generators(1, [0]))[0]  # no simple arithmetic aliasing
    with pytest.raises(ValueError, match="non-negative"):
        seed_generators(-1, [0])
