"""Trajectories, preference pairs and the padded batches built from them."""

from __future__ import annotations

import pytest
import torch

from iftgym import FrozenLakeMDP, PairBatch, PreferencePair, StepBatch, Trajectory

LEFT, DOWN, RIGHT, UP = range(4)


def test_trajectory_validation():
    traj = Trajectory((0, 1, 2), (RIGHT, RIGHT), (0.0, 1.0), True)
    assert len(traj) == 2
    assert traj.ret == 1.0
    with pytest.raises(
        ValueError, match=r"^a trajectory needs one more state than actions: got 2 states and 2 actions$"
    ):
        Trajectory((0, 1), (RIGHT, RIGHT), (0.0, 1.0), True)
    with pytest.raises(ValueError, match=r"got 3 states and 1 actions"):
        Trajectory((0, 1, 2), (RIGHT,), (0.0,), True)
    with pytest.raises(ValueError, match=r"^got 1 rewards for 2 actions: expected one each$"):
        Trajectory((0, 1, 2), (RIGHT, RIGHT), (0.0,), True)
    assert len(Trajectory((5,), (), (), False)) == 0


def test_preference_pair_requires_the_same_start():
    a = Trajectory((0, 1), (RIGHT,), (0.0,), False)
    b = Trajectory((0, 3), (DOWN,), (0.0,), False)
    c = Trajectory((1, 2), (RIGHT,), (1.0,), True)
    assert PreferencePair(a, b).rejected is b
    with pytest.raises(ValueError, match=r"same state.*chosen starts at 0, rejected at 1"):
        PreferencePair(a, c)


def test_step_batch_from_trajectories_pads_and_masks():
    mdp = FrozenLakeMDP.from_map("paper")
    long = mdp.optimal_demonstration()
    short = Trajectory((0, 1, 2), (RIGHT, RIGHT), (0.0, 0.0), False)
    batch = StepBatch.from_trajectories(mdp, [long, short])
    assert batch.ids.shape == batch.actions.shape == batch.mask.shape == batch.rewards.shape == (2, 6)
    assert batch.ids.tolist() == [[0, 6, 12, 18, 19, 20], [0, 1, 0, 0, 0, 0]]
    assert batch.actions.tolist() == [[1, 1, 1, 2, 2, 2], [2, 2, 0, 0, 0, 0]]
    assert batch.mask.tolist() == [[True] * 6, [True, True] + [False] * 4]
    assert batch.rewards.tolist() == [[0, 0, 0, 0, 0, 1], [0] * 6]
    assert batch.lengths.tolist() == [6, 2]
    assert batch.ids.dtype == torch.long
    assert batch.mask.dtype == torch.bool
    assert batch.rewards.dtype == torch.float32
    padded = StepBatch.from_trajectories(mdp, [short], length=4)
    assert padded.ids.shape == (1, 4)
    assert padded.mask.tolist() == [[True, True, False, False]]
    moved = batch.to("cpu")
    assert torch.equal(moved.ids, batch.ids)
    assert torch.equal(moved.mask, batch.mask)


def test_step_batch_rejects_empty_inputs():
    mdp = FrozenLakeMDP.from_map("paper")
    with pytest.raises(ValueError, match=r"^no trajectories: expected at least one to build a batch$"):
        StepBatch.from_trajectories(mdp, [])
    with pytest.raises(ValueError, match=r"^every trajectory is empty: expected at least one step$"):
        StepBatch.from_trajectories(mdp, [Trajectory((0,), (), (), False)])
    short = Trajectory((0, 1, 2), (RIGHT, RIGHT), (0.0, 0.0), False)
    with pytest.raises(ValueError, match=r"^length=1 is shorter than the longest trajectory \(2 steps\)$"):
        StepBatch.from_trajectories(mdp, [short], length=1)
    with pytest.raises(ValueError, match="StepBatch fields must share one shape"):
        StepBatch(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="StepBatch is empty"):
        StepBatch(*(torch.zeros(0, 3) for _ in range(4)))


def test_pair_batch_from_pairs_aligns_lengths():
    mdp = FrozenLakeMDP.from_map("paper")
    pair = PreferencePair(mdp.optimal_demonstration(), mdp.suboptimal_demonstration())
    other = PreferencePair(
        Trajectory((0, 6), (DOWN,), (0.0,), False), Trajectory((0, 1, 2), (RIGHT, RIGHT), (0.0, 0.0), False)
    )
    batch = PairBatch.from_pairs(mdp, [pair, other])
    assert batch.chosen.ids.shape == batch.rejected.ids.shape == (2, 14)
    assert batch.chosen.lengths.tolist() == [6, 1]
    assert batch.rejected.lengths.tolist() == [14, 2]
    assert batch.chosen.ids[0, :6].tolist() == [0, 6, 12, 18, 19, 20]
    assert batch.rejected.actions[1, :2].tolist() == [RIGHT, RIGHT]
    assert batch.rejected.rewards[0].sum().item() == 1.0
    with pytest.raises(ValueError, match=r"^no preference pairs: expected at least one"):
        PairBatch.from_pairs(mdp, [])
