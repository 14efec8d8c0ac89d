"""The data every layer passes around: episodes, preference pairs, their padded batches and training data.

Vocabulary (``docs/design.md`` §2): a policy acts in a *state*; the state reaches the policy as an *input id* (a
Frozen Lake cell index, or the last token of a prompt-plus-prefix) whose row of the policy's encoding table is the
policy's input.

* :class:`Trajectory` and :class:`PreferencePair` are the readable, per-episode records (demonstrations, datasets);
* :class:`StepBatch` stacks trajectories into padded tensors, the one batch type every update rule consumes, and
  :class:`PairBatch` two aligned step batches;
* :class:`TrainingData` is what a world offers the rules to train on (demonstrations and preference pairs).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only: the World contract itself is built on these types
    from iftgym.world import World

State = Hashable
DATA_KINDS = ("demos", "pairs", "env")


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
        shapes = {tuple(t.shape) for t in self.tensors()}
        if len(shapes) != 1:
            raise ValueError(f"StepBatch fields must share one shape, got {sorted(shapes)}")
        if self.ids.shape[-2] == 0 or self.ids.shape[-1] == 0:
            raise ValueError("StepBatch is empty: expected at least one trajectory with at least one step")

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The four fields, in order."""
        return tuple(getattr(self, f.name) for f in fields(self))

    @property
    def size(self) -> int:
        """Number of trajectories (the ``B`` axis)."""
        return self.ids.shape[-2]

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)

    def to(self, device: torch.device | str) -> StepBatch:
        return StepBatch(*(t.to(device) for t in self.tensors()))

    def logps(self, logits: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(K, B, T)`` log-probabilities of the batch's actions under ``logits (K, B, T, A)``, computed in
        ``dtype``; 0 on masked steps."""
        logps = torch.log_softmax(logits.to(dtype), dim=-1)
        taken = logps.gather(-1, self.actions.expand(logps.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return taken * self.mask

    def select(self, index: torch.Tensor) -> StepBatch:
        """The trajectories at ``index`` (a 1-D tensor of positions on the ``B`` axis)."""
        index = index.to(self.ids.device)
        return StepBatch(*(t.index_select(-2, index) for t in self.tensors()))

    @classmethod
    def from_trajectories(
        cls, world: World, trajectories: Sequence[Trajectory], length: int | None = None
    ) -> StepBatch:
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
            ids[b, :n] = torch.tensor([world.input_id(s) for s in traj.states[:n]], dtype=torch.long)
            actions[b, :n] = torch.tensor(traj.actions, dtype=torch.long)
            mask[b, :n] = True
            rewards[b, :n] = torch.tensor(traj.rewards, dtype=torch.float32)
        return cls(ids, actions, mask, rewards)

    @classmethod
    def from_seeds(
        cls, world: World, per_seed: Sequence[Sequence[Trajectory]], device: torch.device | str = "cpu"
    ) -> StepBatch:
        """Each seed's own trajectories, ``per_seed[k]`` (the same number for every seed), stacked into one
        ``(K, B, T)`` batch padded to the longest of all, on ``device``: what a world's ``sample`` returns."""
        if not per_seed or len({len(trajectories) for trajectories in per_seed}) != 1:
            raise ValueError("per_seed must give every seed the same number of trajectories (at least one)")
        length = max(len(traj) for trajectories in per_seed for traj in trajectories)
        batches = [cls.from_trajectories(world, trajectories, length) for trajectories in per_seed]
        return cls(*(torch.stack(parts).to(device) for parts in zip(*(b.tensors() for b in batches))))


@dataclass
class PairBatch:
    """Preference pairs as two aligned step batches; ``reference``, when a rule has computed it, the frozen
    reference policy's log-probabilities of each pair ``(K, B, 2)`` (chosen, rejected), which minibatches carry
    along."""

    chosen: StepBatch
    rejected: StepBatch
    reference: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.chosen.size

    def to(self, device: torch.device | str) -> PairBatch:
        reference = None if self.reference is None else self.reference.to(device)
        return PairBatch(self.chosen.to(device), self.rejected.to(device), reference)

    def select(self, index: torch.Tensor) -> PairBatch:
        reference = None if self.reference is None else self.reference.index_select(-2, index.to(self.reference.device))
        return PairBatch(self.chosen.select(index), self.rejected.select(index), reference)

    def joined(self) -> StepBatch:
        """Chosen then rejected trajectories as one step batch (``2B`` on the batch axis), so that a model reads both
        sides in one pass; the two sides share one shape."""
        return StepBatch(*(torch.cat(sides, dim=-2) for sides in zip(self.chosen.tensors(), self.rejected.tensors())))

    @classmethod
    def from_pairs(cls, world: World, pairs: Sequence[PreferencePair]) -> PairBatch:
        if not pairs:
            raise ValueError("no preference pairs: expected at least one (chosen, rejected) pair")
        length = max(max(len(p.chosen), len(p.rejected)) for p in pairs)
        return cls(
            StepBatch.from_trajectories(world, [p.chosen for p in pairs], length),
            StepBatch.from_trajectories(world, [p.rejected for p in pairs], length),
        )


@dataclass
class TrainingData:
    """What the rules train on: demonstrations for SFT/IFT/online DPO, preference pairs for DPO/ORPO.

    When only pairs are given, their chosen trajectories serve as demonstrations (as in ``sft+dpo``).
    """

    demos: StepBatch | None = None
    pairs: PairBatch | None = None

    def has(self, kind: str) -> bool:
        """Whether a rule that trains on ``kind`` (``"demos"``, ``"pairs"`` or ``"env"``) finds its data here."""
        if kind == "pairs":
            return self.pairs is not None
        return kind == "env" or self.demos is not None or self.pairs is not None

    def for_kind(self, kind: str, rule: str) -> StepBatch | PairBatch | None:
        """The batch a rule named ``rule`` that trains on ``kind`` uses (``None`` for ``"env"``)."""
        if kind not in DATA_KINDS:
            raise ValueError(f"rule {rule!r} trains on {kind!r}: expected one of {', '.join(DATA_KINDS)}")
        if not self.has(kind):
            what = "preference pairs" if kind == "pairs" else "demonstrations"
            raise ValueError(f"rule {rule!r} trains on {what}, but none were given")
        if kind == "env":
            return None
        if kind == "pairs":
            return self.pairs
        return self.demos if self.demos is not None else self.pairs.chosen
