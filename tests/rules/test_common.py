"""The rules' shared pieces: a frozen reference's step log-probabilities of a stage's data, computed once, read back
for every batch drawn from the data (shared by the seeds or each seed's own) and computed afresh for any other."""

from __future__ import annotations

import torch

from iftgym.policies import TinyGPT
from iftgym.rules.base import frozen_copy
from iftgym.rules.common import ReferenceLogps, step_logps
from iftgym.types import StepBatch

N_IDS, LENGTH = 7, 5


def random_batch(leading: tuple[int, ...], size: int, seed: int = 0) -> StepBatch:
    """``size`` random trajectories of ``LENGTH`` steps, each ending at a random step: ``(*leading, size, T)``."""
    g = torch.Generator().manual_seed(seed)
    shape = (*leading, size, LENGTH)
    ids = torch.randint(N_IDS, shape, generator=g)
    mask = torch.arange(LENGTH) < torch.randint(1, LENGTH + 1, (*shape[:-1], 1), generator=g)
    return StepBatch(ids, torch.randint(N_IDS, shape, generator=g), mask, torch.zeros(shape))


def prepared(data: StepBatch) -> ReferenceLogps:
    """The log-probabilities of ``data`` under a three-seed TinyGPT's frozen copy, computed once."""
    policy = TinyGPT(N_IDS, LENGTH, n_layer=1, n_head=2, n_embd=16, seeds=3, device="cpu")
    cache = ReferenceLogps(frozen_copy(policy))
    cache.prepare(data)
    return cache


def test_every_minibatch_of_the_data_reads_the_forward_pass_value_without_one() -> None:
    for leading in ((), (3,)):  # shared by the seeds, or each seed's own
        data = random_batch(leading, 12)
        cache = prepared(data)
        for index in (torch.tensor([5, 0, 11, 5]), torch.arange(12).flip(0), torch.tensor([3])):
            batch = data.select(index)
            passes = cache.reference.token_passes
            read = cache(batch)
            assert cache.reference.token_passes == passes  # read back, no forward pass
            torch.testing.assert_close(read, step_logps(cache.reference, batch))


def test_a_batch_with_a_row_not_in_the_data_is_computed_afresh() -> None:
    data = random_batch((3,), 12)
    cache = prepared(data)
    changed = data.select(torch.tensor([2, 4]))
    changed.actions[1, 0, 0] = (changed.actions[1, 0, 0] + 1) % N_IDS  # seed 1's first row, its first action
    torch.testing.assert_close(cache(changed), step_logps(cache.reference, changed))
    other_seed = StepBatch(*(t.roll(1, 0) for t in data.select(torch.tensor([2, 4])).tensors()))  # rows of seed k-1
    torch.testing.assert_close(cache(other_seed), step_logps(cache.reference, other_seed))
    shared = StepBatch(*(t[0] for t in data.tensors()))  # seed 0's rows as data shared by every seed
    torch.testing.assert_close(cache(shared), step_logps(cache.reference, shared))
    unprepared = ReferenceLogps(cache.reference)
    torch.testing.assert_close(unprepared(data), step_logps(cache.reference, data))
