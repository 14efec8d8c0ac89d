"""The one MDP interface that Frozen Lake and token generation share.

Vocabulary (see DESIGN.md section 2): a policy acts in a *state*; the state is fed to the policy as an *input id*
(a Frozen Lake cell index, or the last token of a prompt-plus-prefix) whose row of an encoding table is the policy's
input. IFT's temporal residual connection needs the *soft* encoding of where an action leads: the
probability-weighted mix of encodings under the transition, which :meth:`MDP.successor_probs` provides as a
distribution over input ids.

Data flows through two shapes:

* :class:`Trajectory` and :class:`PreferencePair` are the readable, per-episode records (demonstrations, datasets);
* :class:`StepBatch` stacks trajectories into padded tensors, the one batch type every update rule consumes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

State = Hashable


@dataclass(frozen=True)
class Trajectory:
    """One episode: ``states[t]`` is where ``actions[t]`` was taken and ``rewards[t]`` received.

    ``states`` has one more entry than ``actions``: the state the last action led to. ``terminal`` says whether
    that final state ended the episode (goal, hole, end of sequence) rather than a time limit.
    """

    states: tuple[State, ...]
    actions: tuple[int, ...]
    rewards: tuple[float, ...]
    terminal: bool

    def __post_init__(self) -> None:
        if len(self.states) != len(self.actions) + 1:
            raise ValueError(
                f"a trajectory needs one more state than actions: got {len(self.states)} states "
                f"and {len(self.actions)} actions"
            )
        if len(self.rewards) != len(self.actions):
            raise ValueError(f"got {len(self.rewards)} rewards for {len(self.actions)} actions: expected one each")

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def ret(self) -> float:
        """Undiscounted return."""
        return float(sum(self.rewards))


@dataclass(frozen=True)
class PreferencePair:
    """Two trajectories of the same task, ``chosen`` preferred over ``rejected``."""

    chosen: Trajectory
    rejected: Trajectory

    def __post_init__(self) -> None:
        if self.chosen.states[0] != self.rejected.states[0]:
            raise ValueError(
                "a preference pair must start from the same state (the same task): "
                f"chosen starts at {self.chosen.states[0]!r}, rejected at {self.rejected.states[0]!r}"
            )


@runtime_checkable
class MDP(Protocol):
    """What an update rule needs to know about a world: Frozen Lake and token generation both implement it."""

    n_actions: int
    n_ids: int  # size of the policy-input vocabulary: number of cells, or of tokens

    def start_distribution(self) -> Mapping[State, float]:
        """Probability of each start state."""

    def transition(self, state: State, action: int) -> Mapping[State, float]:
        """Distribution of the next state (one entry with probability 1 when deterministic)."""

    def reward(self, state: State, action: int, next_state: State) -> float:
        """Reward for the transition."""

    def is_terminal(self, state: State) -> bool:
        """Whether an episode ends on reaching ``state``."""

    def input_id(self, state: State) -> int:
        """The id whose encoding represents ``state`` at the policy's input at this step."""

    def successor_probs(self, ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """For input ids and actions of shape ``(...)``, the distribution ``(..., n_ids)`` of the next input id."""


def soft_encode(probs: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Probability-weighted mix of encodings: ``probs (..., n_ids) @ table (n_ids, D)``."""
    return probs.to(table.dtype) @ table


@dataclass
class StepBatch:
    """Trajectories as padded tensors of shape ``(B, T)``, or ``(K, B, T)`` when each of K seeds has its own data.

    ``ids[..., t]`` is the policy input at step t, ``actions[..., t]`` the action taken there, ``mask`` marks the
    steps that count (real steps whose action is a target), ``rewards`` the reward of each step.
    """

    ids: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor

    def __post_init__(self) -> None:
        shapes = {tuple(t.shape) for t in (self.ids, self.actions, self.mask, self.rewards)}
        if len(shapes) != 1:
            raise ValueError(f"StepBatch fields must share one shape, got {sorted(shapes)}")
        if self.ids.shape[-2] == 0 or self.ids.shape[-1] == 0:
            raise ValueError("StepBatch is empty: expected at least one trajectory with at least one step")

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)

    def to(self, device: torch.device | str) -> StepBatch:
        return StepBatch(*(t.to(device) for t in (self.ids, self.actions, self.mask, self.rewards)))

    @classmethod
    def from_trajectories(cls, mdp: MDP, trajectories: Sequence[Trajectory], length: int | None = None) -> StepBatch:
        """Stack trajectories, padding to the longest (or to ``length``)."""
        if not trajectories:
            raise ValueError("no trajectories: expected at least one to build a batch")
        longest = max(len(traj) for traj in trajectories)
        if longest == 0:
            raise ValueError("every trajectory is empty: expected at least one step")
        length = longest if length is None else length
        if length < longest:
            raise ValueError(f"length={length} is shorter than the longest trajectory ({longest} steps)")
        ids = torch.zeros(len(trajectories), length, dtype=torch.long)
        actions = torch.zeros_like(ids)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        rewards = torch.zeros_like(ids, dtype=torch.float32)
        for b, traj in enumerate(trajectories):
            n = len(traj)
            ids[b, :n] = torch.tensor([mdp.input_id(s) for s in traj.states[:n]], dtype=torch.long)
            actions[b, :n] = torch.tensor(traj.actions, dtype=torch.long)
            mask[b, :n] = True
            rewards[b, :n] = torch.tensor(traj.rewards, dtype=torch.float32)
        return cls(ids, actions, mask, rewards)


@dataclass
class PairBatch:
    """Preference pairs as two aligned step batches."""

    chosen: StepBatch
    rejected: StepBatch

    @classmethod
    def from_pairs(cls, mdp: MDP, pairs: Sequence[PreferencePair]) -> PairBatch:
        if not pairs:
            raise ValueError("no preference pairs: expected at least one (chosen, rejected) pair")
        length = max(max(len(p.chosen), len(p.rejected)) for p in pairs)
        return cls(
            StepBatch.from_trajectories(mdp, [p.chosen for p in pairs], length),
            StepBatch.from_trajectories(mdp, [p.rejected for p in pairs], length),
        )
