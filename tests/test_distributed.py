"""Data-parallel training: a minibatch is shared out evenly, and ``torchrun`` with two CPU processes trains the
same weights as one process on the same global batch (to float tolerance)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from iftgym import distributed
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.jsonl import JSONLTask


def test_one_process_trains_on_the_whole_minibatch() -> None:
    batch = TokenWorld(JSONLTask("reverse")).training_data().demos
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.shard(batch) is batch
    distributed.check_batch(7)  # any size splits over one process


def run_lm(out, *launcher: str) -> None:
    """``iftgym lm`` on tiny settings, saving its models in ``out / "models"``."""
    args = ["-m", "iftgym", "lm", "--data", "reverse_preference", "--algo", "sft,ift,dpo", "--steps", "4", "--seeds",
            "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "8", "--device", "cpu",
            "--out", str(out / "runs"), "--save", str(out / "models")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *launcher, *args] if launcher else [sys.executable, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_processes_train_what_one_process_trains(tmp_path) -> None:
    run_lm(tmp_path / "one")
    run_lm(tmp_path / "two", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    for algo in ("sft", "ift", "dpo"):
        alone = load_file(tmp_path / "one" / "models" / algo / "policy.safetensors")
        shared = load_file(tmp_path / "two" / "models" / algo / "policy.safetensors")
        for name, weight in alone.items():
            torch.testing.assert_close(shared[name], weight, rtol=1e-4, atol=1e-5, msg=f"{algo}: {name}")
    logs = [(tmp_path / run / "runs" / "metrics.jsonl").read_text().splitlines() for run in ("one", "two")]
    assert len(logs[0]) == len(logs[1]) == 12  # rank 0 alone logs, every step once
