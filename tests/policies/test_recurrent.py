"""GRUPolicy: a Frozen Lake policy with memory — its step() is its forward pass one step at a time, its logits
depend on the cells before, seeds start alike alone or together, and checkpoints rebuild it."""

from __future__ import annotations

import torch

from iftgym import FrozenLakeMDP
from iftgym.policies import GRUPolicy
from iftgym.policies.checkpoint import load_policy, save_policy
from iftgym.world import seed_generators


def test_step_by_step_is_the_forward_pass_and_the_past_matters() -> None:
    policy = GRUPolicy(9, 4, hidden=8, seeds=3)
    ids = torch.tensor([[0, 1, 4, 5], [0, 3, 4, 7]])
    with torch.no_grad():
        full = policy.logits_at(ids)
        state, steps = None, []
        for t in range(ids.shape[1]):
            logits, state = policy.step(policy.embed(ids[:, t : t + 1])[:, :, 0], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 2), full)
    assert full.shape == (3, 2, 4, 4) and not policy.markov
    # both sequences are in cell 4 at step 2, reached from different cells: the logits differ there
    assert not torch.allclose(full[:, 0, 2], full[:, 1, 2])


def test_a_seed_starts_the_same_alone_or_beside_others(tmp_path) -> None:
    alone, together = GRUPolicy(9, 4, hidden=8, seeds=[5]), GRUPolicy(9, 4, hidden=8, seeds=[2, 5])
    ids = torch.tensor([[0, 1, 2]])
    torch.testing.assert_close(alone.logits_at(ids)[0], together.logits_at(ids)[1])
    loaded = load_policy(save_policy(together, tmp_path / "gru.safetensors"))
    assert isinstance(loaded, GRUPolicy) and loaded.spec() == together.spec()
    torch.testing.assert_close(loaded.logits_at(ids), together.logits_at(ids))


def test_frozen_lake_rolls_out_a_policy_with_memory_seed_by_seed() -> None:
    model = FrozenLakeMDP.from_map("4x4")
    both = GRUPolicy(model.n_states, 4, hidden=8, seeds=[0, 1])
    one = GRUPolicy(model.n_states, 4, hidden=8, seeds=[1])
    batch = model.sample(both, 20, seed_generators(3, both.seeds))
    alone = model.sample(one, 20, seed_generators(3, one.seeds))
    steps = alone.ids.shape[-1]
    assert torch.equal(batch.ids[1, :, :steps], alone.ids[0]) and not batch.mask[1, :, steps:].any()
    # every step moves as the map allows: the next step starts where the last one led
    for k, episode in zip(*torch.nonzero(batch.mask[..., 1]).T):
        assert (
            batch.ids[k, episode, 1].item() in model.next_cells[batch.ids[k, episode, 0], batch.actions[k, episode, 0]]
        )
