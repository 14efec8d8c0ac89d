"""Pieces every update rule shares: per-step log-probabilities of a batch under a policy (of the taken actions, or
of every action), a frozen reference's log-probabilities of a stage's fixed data computed once, and masked
means."""

from __future__ import annotations

import torch

from iftgym.policies.base import Policy
from iftgym.types import PairBatch, StepBatch

PREPARE_ROWS = 256  # trajectories per forward pass when a reference's log-probabilities of a stage's data are computed


def step_logps(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T)`` teacher-forced log-probabilities ``log pi(a_t | s_t)`` of the batch; 0 on masked steps."""
    return batch.logps(policy.logits_at(batch.ids))


class ReferenceLogps:
    """A frozen reference policy's step log-probabilities of a stage's fixed demonstrations, computed once (by
    :meth:`prepare`, from a rule's ``prepare``) and read for every batch drawn from them, instead of a forward pass of
    the reference at every step.

    The loop's minibatches, micro-batches and process shares carry no row positions, so a batch's rows are found by
    their content: a row equal to a stored one (the same input ids, actions and mask, and the same seed when each seed
    has data of its own) has the stored log-probabilities, the same function of the same inputs (equal up to float
    round-off between batch shapes). A batch with any row not stored (data not prepared, or changed since) is read
    by a forward pass of the reference, so a stale value is never returned."""

    def __init__(self, reference: Policy) -> None:
        self.reference = reference
        self.logps: torch.Tensor | None = None  # (K, B, T) of the prepared data
        self.leading: torch.Size | None = None  # the prepared data's shape before (B, T): () shared, (K,) per seed
        self.rows: list[dict[bytes, int]] = []  # per leading index (one, or one per seed): a row's content -> b

    def prepare(self, data: StepBatch) -> None:
        """Compute and keep the reference's step log-probabilities of ``data`` (in chunks of
        :data:`PREPARE_ROWS` trajectories, so that memory stays near a training step's)."""
        with torch.no_grad():
            chunks = [step_logps(self.reference, data.select(index))
                      for index in torch.arange(data.size).split(PREPARE_ROWS)]  # fmt: skip
        self.logps = torch.cat(chunks, dim=-2)
        self.leading = data.ids.shape[:-2]
        self.rows = [{key: b for b, key in enumerate(keys)} for keys in row_keys(data)]

    def __call__(self, batch: StepBatch) -> torch.Tensor:
        """``(K, B, T)`` the reference's log-probabilities of ``batch``'s actions: the stored ones when every row of
        ``batch`` is a row of the prepared data, else from a forward pass."""
        if self.logps is not None and batch.ids.shape[:-2] == self.leading:
            found = [[rows.get(key) for key in keys] for rows, keys in zip(self.rows, row_keys(batch))]
            if all(b is not None for seed in found for b in seed):
                index = torch.tensor(found, device=self.logps.device).unsqueeze(-1)  # (1 or K, B, 1)
                return self.logps.gather(-2, index.expand(*self.logps.shape[:-2], batch.size, self.logps.shape[-1]))
        with torch.no_grad():
            return step_logps(self.reference, batch)


def row_keys(batch: StepBatch) -> list[list[bytes]]:
    """Each trajectory's content (input ids, actions, mask) as bytes, per leading index of the batch: one list of
    ``B`` keys for a shared batch ``(B, T)``, one per seed for ``(K, B, T)``."""
    rows = torch.cat([batch.ids, batch.actions, batch.mask.long()], dim=-1)
    return [[row.tobytes() for row in seed] for seed in rows.reshape(-1, *rows.shape[-2:]).cpu().numpy()]


def pair_step_logps(policy: Policy, pairs: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, B, T)`` step log-probabilities of the chosen and of the rejected trajectories, from one forward pass
    over both sides (half the calls into the model of two passes)."""
    return step_logps(policy, pairs.joined()).split(pairs.size, dim=-2)


def sequence_logps(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B)``: log-probability of each whole trajectory (sum over its steps)."""
    return step_logps(policy, batch).sum(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis counting only masked-in entries (0 for a row with none)."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def sft_loss_from_logps(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(K,)``: per-sequence mean of the step losses ``-log pi``, then mean over the batch."""
    return masked_mean(-logps, mask).mean(-1)


def frozen_table(policy: Policy) -> torch.Tensor:
    """A copy of the policy's encoding table that no gradient reaches (a rule re-syncs it after every optimiser
    step, as IFT's reference code does with its frozen ``embed_tokens``); a fixed table (one-hot) is returned as is."""
    table = policy.embedding_table()
    return table.detach().clone() if table.requires_grad else table


def step_log_probs(policy: Policy, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T, A)`` the policy's log-probabilities of every action at each step of the batch, in float32 (the
    rules that read more than the taken action's: a full-vocabulary KL, a top-k entropy)."""
    return torch.log_softmax(policy.logits_at(batch.ids).float(), -1)


def taken_logps(log_probs: torch.Tensor, batch: StepBatch) -> torch.Tensor:
    """``(K, B, T)`` the log-probabilities of the batch's actions read from ``log_probs`` ``(K, B, T, A)``; 0 on
    masked steps (what :func:`step_logps` returns, from a forward pass already made)."""
    taken = log_probs.gather(-1, batch.actions.expand(log_probs.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return taken * batch.mask
