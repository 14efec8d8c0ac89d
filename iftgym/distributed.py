"""Data-parallel training over processes with PyTorch's own engine: ``torchrun`` starts the processes,
``torch.distributed`` connects them (gloo on the CPU, NCCL on CUDA) and ``DistributedDataParallel`` averages the
gradients in the backward pass.

A process learns that it is one of several from the variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``...).
Every process draws the same minibatch (the data order comes from the run's seed) and trains on its own equal
share of it (:func:`shard`), so the averaged gradient is that of the whole minibatch and N processes follow a
one-process run with the same global batch to float tolerance. Rank 0 alone writes outputs and prints.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from iftgym.types import PairBatch, StepBatch


def world_size() -> int:
    """The number of training processes (1 outside ``torchrun``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 outside ``torchrun``)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes outputs and prints: rank 0, or the only process."""
    return rank() == 0


def init_from_environment(device: torch.device) -> bool:
    """Join the process group ``torchrun`` announced (gloo for the CPU, NCCL for CUDA, on which each process takes
    the GPU of its ``LOCAL_RANK``); ``False`` when the process runs alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def local_device(device: torch.device) -> torch.device:
    """The device of this process: its ``LOCAL_RANK``'s GPU under ``torchrun`` on CUDA, else ``device``."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def check_batch(size: int) -> None:
    """A global minibatch of ``size`` rows must split evenly over the processes (else they would not average to it)."""
    processes = world_size()
    if size % processes:
        raise ValueError(f"batch_size={size} does not split over {processes} processes: expected a multiple of "
                         f"{processes}, so that every process trains on an equal share")  # fmt: skip


def shard(batch: StepBatch | PairBatch | None) -> StepBatch | PairBatch | None:
    """This process's equal, contiguous share of a minibatch (all of it when the process runs alone)."""
    processes = world_size()
    if batch is None or processes == 1:
        return batch
    check_batch(batch.size)
    share = batch.size // processes
    return batch.select(torch.arange(rank() * share, (rank() + 1) * share))


def sum_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The sum of ``values`` over the processes (``values`` itself, detached, when the process runs alone)."""
    if world_size() == 1:
        return values.detach()
    values = values.detach().clone()
    dist.all_reduce(values)
    return values


def mean_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the processes (for metrics, logged once by rank 0)."""
    if world_size() == 1:
        return values
    values = values.detach().clone()
    dist.all_reduce(values)
    return values / world_size()
