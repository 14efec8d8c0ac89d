"""Policy checkpoints: round trips, atomic writes, and errors that name the path and the problem."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from iftgym import FrozenLakeMDP
from iftgym.loop import TrainConfig, train
from iftgym.policies import MLPPolicy, TabularPolicy
from iftgym.policies.checkpoint import load_metadata, load_policy, save_policy
from iftgym.types import TrainingData


@pytest.mark.parametrize(
    "make",
    [
        lambda m: MLPPolicy(m.n_states, 4, hidden=16, seeds=[3, 8]),
        lambda m: TabularPolicy(m.n_states, 4, seeds=[5], init_std=0.7),
    ],
)
def test_checkpoint_round_trip(paper: FrozenLakeMDP, data: TrainingData, tmp_path: Path, make) -> None:
    policy = make(paper)
    train(policy, "sft", paper, data, TrainConfig(steps=5))
    path = save_policy(policy, tmp_path / "run" / "policy.safetensors", {"algorithm": "sft", "steps": 5})
    loaded = load_policy(path)
    assert type(loaded) is type(policy) and loaded.seeds == policy.seeds and loaded.spec() == policy.spec()
    assert torch.equal(loaded.action_probs(), policy.action_probs())
    for (name, a), (_, b) in zip(policy.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert load_metadata(path) == {"algorithm": "sft", "steps": 5}
    assert os.listdir(tmp_path / "run") == ["policy.safetensors"]  # no temporary file left behind
    # overwriting is atomic too and leaves one file
    save_policy(loaded, path)
    assert os.listdir(tmp_path / "run") == ["policy.safetensors"] and load_metadata(path) == {}


def test_checkpoint_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "policy.safetensors"
    save_policy(MLPPolicy(6, 4, hidden=4), path, {"version": 1})

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("iftgym.policies.checkpoint.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_policy(MLPPolicy(6, 4, hidden=4), path, {"version": 2})
    assert os.listdir(tmp_path) == ["policy.safetensors"]
    assert load_metadata(path) == {"version": 1}


def test_checkpoint_errors_name_the_path_and_the_problem(tmp_path: Path) -> None:
    good = save_policy(MLPPolicy(6, 4, hidden=4, seeds=2), tmp_path / "good.safetensors")
    raw = good.read_bytes()
    with pytest.raises(ValueError, match=r"missing\.safetensors.*no such file"):
        load_policy(tmp_path / "missing.safetensors")
    for name, content in [
        ("truncated", raw[: len(raw) - 10]),
        ("header", raw[:5]),
        ("empty", b""),
        ("text", b"hello, this is not a checkpoint at all"),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}.*corrupt"):
            load_policy(tmp_path / name)

    def write(name: str, header: dict, tensors: dict | None = None) -> Path:
        path = tmp_path / name
        tensors = tensors if tensors is not None else MLPPolicy(6, 4, hidden=4, seeds=2).state_dict()
        save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=header)
        return path

    spec = json.dumps({"n_ids": 6, "n_actions": 4, "hidden": 4, "seeds": [0, 1]})
    header = {"format": "iftgym.policy/1", "class": "MLPPolicy", "spec": spec, "metadata": "{}"}
    assert load_policy(write("ok", header)).spec()["hidden"] == 4
    with pytest.raises(ValueError, match=r"foreign.*not an iftgym policy checkpoint"):
        load_policy(write("foreign", {}))
    with pytest.raises(ValueError, match=r"unknown_class.*unknown policy class 'GPT5'.*MLPPolicy"):
        load_policy(write("unknown_class", {**header, "class": "GPT5"}))
    with pytest.raises(ValueError, match=r"bad_spec.*cannot rebuild MLPPolicy"):
        load_policy(write("bad_spec", {**header, "spec": json.dumps({"n_ids": 6, "width": 3})}))
    with pytest.raises(ValueError, match=r"bad_json.*'spec'"):
        load_policy(write("bad_json", {**header, "spec": "{not json"}))
    wide = MLPPolicy(6, 4, hidden=8, seeds=2).state_dict()
    with pytest.raises(ValueError, match=r"shapes.*w1 has shape \(2, 6, 8\), expected \(2, 6, 4\)"):
        load_policy(write("shapes", header, wide))
    with pytest.raises(ValueError, match=r"keys.*missing w2"):
        load_policy(write("keys", header, {k: v for k, v in wide.items() if k != "w2"}))
    with pytest.raises(ValueError, match="JSON"):
        save_policy(MLPPolicy(6, 4), tmp_path / "x.safetensors", {"array": np.zeros(2)})


def test_loading_checks_device_weights_and_sizes_before_anything_large(tmp_path: Path) -> None:
    policy = MLPPolicy(36, 4, hidden=8, seeds=2)
    path = save_policy(policy, tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="device='tpu' is not a device"):
        load_policy(path, device="tpu")
    # NaN weights (a damaged file, or a run that diverged) are refused, naming the tensors
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    state["w1"][0, 0, 0] = float("nan")
    header = {"format": "iftgym.policy/1", "class": "MLPPolicy", "spec": json.dumps(policy.spec()), "metadata": "{}"}
    save_file(state, tmp_path / "nan.safetensors", metadata=header)
    with pytest.raises(ValueError, match=r"holds NaN or infinite values in w1"):
        load_policy(tmp_path / "nan.safetensors")
    # a spec asking for an enormous model is refused by the constructor's memory check, before any allocation
    huge = {**header, "spec": json.dumps({**policy.spec(), "hidden": 10**10})}
    save_file(policy.state_dict(), tmp_path / "huge.safetensors", metadata=huge)
    with pytest.raises(ValueError, match=r"cannot rebuild MLPPolicy .* more than this machine's"):
        load_policy(tmp_path / "huge.safetensors")
