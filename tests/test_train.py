"""The training loop: every rule and recipe learns on the paper map, seeds are reproducible and independent,
checkpoints round-trip, and the Stable-Baselines3 baseline returns policy matrices."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from iftgym import FrozenLakeMDP, PairBatch, PreferencePair, StepBatch
from iftgym.loop import TrainConfig, train
from iftgym.policies import MLPPolicy, TabularPolicy
from iftgym.policies.checkpoint import load_metadata, load_policy, save_policy
from iftgym.rules import make_rule
from iftgym.rules.common import sequence_logps
from iftgym.types import TrainingData


@pytest.fixture(scope="module")
def paper() -> FrozenLakeMDP:
    return FrozenLakeMDP.from_map("paper")


@pytest.fixture(scope="module")
def data(paper: FrozenLakeMDP) -> TrainingData:
    demo, sub = paper.optimal_demonstration(), paper.suboptimal_demonstration()
    return TrainingData(
        demos=StepBatch.from_trajectories(paper, [demo]),
        pairs=PairBatch.from_pairs(paper, [PreferencePair(demo, sub)]),
    )


def mlp(paper: FrozenLakeMDP, seeds=2) -> MLPPolicy:
    return MLPPolicy(paper.n_states, paper.n_actions, hidden=32, seeds=seeds)


def stage_bounds(steps: int, stages: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, steps, stages + 1).round().astype(int)
    return list(itertools.pairwise(bounds))


# -- every rule learns ------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sft", "ift", "dpo", "orpo", "sft+dpo", "sft+orpo", "sft+ift"])
def test_offline_rules_and_recipes_decrease_their_loss(paper: FrozenLakeMDP, data: TrainingData, algorithm: str):
    steps = 40
    result = train(mlp(paper), algorithm, paper, data, TrainConfig(steps=steps))
    loss = result.history["loss"]
    assert loss.shape == (steps, 2)
    for begin, end in stage_bounds(steps, len(algorithm.split("+"))):
        assert (loss[end - 1] < 0.5 * loss[begin]).all(), (algorithm, loss[begin], loss[end - 1])
    if algorithm == "dpo":  # DPO only contrasts chosen with rejected: it need not make the chosen action greedy
        assert (result.history["rewards/accuracies"][-1] == 1).all()
        assert (result.history["rewards/margins"][-1] > 1).all()
    else:  # a likelihood term makes the policy follow the demonstration greedily
        greedy = result.policy.action_probs().argmax(-1)[:, data.demos.ids[0]]
        assert (greedy == data.demos.actions[0]).all()


def test_online_dpo_learns_the_demonstration(paper: FrozenLakeMDP, data: TrainingData) -> None:
    # Online DPO's loss returns to log 2 once the policy's samples *are* the demonstration, so check what it
    # learns instead: the demonstration's log-probability rises, and the loss dipped below log 2 on the way.
    policy = mlp(paper)
    start = sequence_logps(policy, data.demos).detach()
    result = train(policy, "dpo-online", paper, data, TrainConfig(steps=40))
    assert (sequence_logps(policy, data.demos).detach() > start + 2.0).all()
    assert (result.history["loss"].min(0) < np.log(2) - 0.05).all()
    assert (result.history["logps/chosen"][-1] > result.history["logps/chosen"][0]).all()


@pytest.mark.parametrize("algorithm, steps, overrides", [("ppo", 160, {"n_episodes": 32}), ("reinforce", 80, {})])
def test_on_policy_rules_raise_the_episode_return(paper: FrozenLakeMDP, algorithm: str, steps: int, overrides):
    # The reward is sparse: a seed learns only once its random walk has found the goal, so judge the mean over
    # seeds (with these settings both seeds find it).
    policy = MLPPolicy(paper.n_states, paper.n_actions, seeds=2)
    result = train(policy, make_rule(algorithm, **overrides), paper, None, TrainConfig(steps=steps, seed=1))
    returns = result.history["episode_return"].mean(-1)
    quarter = steps // 4
    assert returns[-quarter:].mean() > returns[:quarter].mean() + 0.5
    success = [paper.success_probability(p) for p in policy.action_probs().double().numpy()]
    assert np.mean(success) > 0.5


# -- reproducibility and seed independence ----------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sft", "ift", "dpo-online", "ppo"])
def test_same_seed_same_result_different_seed_different_result(
    paper: FrozenLakeMDP, data: TrainingData, algorithm: str
) -> None:
    def run(policy_seeds, seed):
        policy = mlp(paper, seeds=policy_seeds)
        # PPO learns nothing before it first reaches the goal; an entropy bonus makes every rollout count
        rule = make_rule("ppo", ent_coef=0.01) if algorithm == "ppo" else algorithm
        train(policy, rule, paper, data, TrainConfig(steps=12, seed=seed))
        return [p.detach().clone() for p in policy.parameters()]

    first, again = run([0, 1], 0), run([0, 1], 0)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other_init = run([2, 3], 0)
    assert all(not torch.allclose(a, b) for a, b in zip(first, other_init))
    if algorithm in ("dpo-online", "ppo"):  # the loop's seed drives the sampling
        other_sampling = run([0, 1], 1)
        assert any(not torch.equal(a, b) for a, b in zip(first, other_sampling))


def test_noisy_ift_is_reproducible(paper: FrozenLakeMDP, data: TrainingData) -> None:
    runs = [
        train(
            mlp(paper),
            make_rule("ift", schedule="noisy", prediction="sample"),
            paper,
            data,
            TrainConfig(steps=8, seed=seed),
        )
        for seed in (0, 0, 1)
    ]
    np.testing.assert_array_equal(runs[0].history["lambda"], runs[1].history["lambda"])
    assert torch.equal(runs[0].policy.action_probs(), runs[1].policy.action_probs())
    assert not np.array_equal(runs[0].history["lambda"], runs[2].history["lambda"])


@pytest.mark.parametrize("algorithm", ["sft", "ift", "dpo", "orpo"])
def test_seeds_trained_together_equal_seeds_trained_alone(
    paper: FrozenLakeMDP, data: TrainingData, algorithm: str
) -> None:
    config = TrainConfig(steps=15)
    together = train(mlp(paper, seeds=[4, 7, 9]), algorithm, paper, data, config)
    for index, seed in enumerate([4, 7, 9]):
        alone = train(mlp(paper, seeds=[seed]), algorithm, paper, data, config)
        torch.testing.assert_close(
            together.policy.action_probs()[index], alone.policy.action_probs()[0], rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            together.history["loss"][:, index], alone.history["loss"][:, 0], rtol=1e-5, atol=1e-6
        )


# -- checkpoints ------------------------------------------------------------------------------------------
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


# -- the Stable-Baselines3 baseline -----------------------------------------------------------------------
def test_sb3_ppo_returns_row_stochastic_policies(paper: FrozenLakeMDP) -> None:
    from iftgym.experiments.baselines import train_sb3_ppo

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    small = {"total_timesteps": 128, "n_envs": 4, "n_steps": 16, "batch_size": 32, "n_epochs": 1}
    policies = train_sb3_ppo(paper, seeds=[0, 1], **small)
    assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG is untouched
    assert torch.get_num_threads() == threads
    assert policies.shape == (2, paper.n_states, 4) and policies.dtype == np.float64
    assert (policies >= 0).all()
    np.testing.assert_allclose(policies.sum(-1), 1.0, atol=1e-6)
    assert not np.allclose(policies[0], policies[1])
    np.testing.assert_array_equal(train_sb3_ppo(paper, seeds=[1], **small)[0], policies[1])  # seeded
    slippery = FrozenLakeMDP.from_map(["SFF", "FHF", "FFG"], slippery=True, success_rate=0.5)
    assert train_sb3_ppo(slippery, seeds=1, **small).shape == (1, 9, 4)
