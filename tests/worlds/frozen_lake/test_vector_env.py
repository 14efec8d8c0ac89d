"""The native vector env of ``iftgym/FrozenLake-v0``: Gymnasium's vector API (spaces, shapes, dtypes, next-step
autoreset, seeding), the same steps as ``SyncVectorEnv`` of the single env, the model's transitions, the single env's
episodes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode

import iftgym  # noqa: F401  (registers iftgym/FrozenLake-v0 and its vector entry point)
from iftgym.worlds.frozen_lake.env import FrozenLakeEnv
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP
from iftgym.worlds.frozen_lake.vector_env import FrozenLakeVectorEnv

ENV_ID = "iftgym/FrozenLake-v0"
LEFT, DOWN, RIGHT, UP = range(4)
SIGMAS = 5  # binomial bounds: a correct env fails one comparison with probability below 1e-6


def native(num_envs, **kwargs):
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def sync(num_envs, **kwargs):
    """Gymnasium's ``SyncVectorEnv`` of single envs (built directly: ``make_vec(..., vectorization_mode="sync",
    max_episode_steps=k)`` would add a ``TimeLimit`` wrapper, which also truncates an episode that terminates on its
    last step, where the env's own limit and the native vector env report termination only)."""
    return gym.vector.SyncVectorEnv([lambda: FrozenLakeEnv(**kwargs)] * num_envs)


def test_make_vec_builds_the_native_env_by_default():
    for env in (native(3), gym.make_vec(ENV_ID, num_envs=3)):
        assert isinstance(env, FrozenLakeVectorEnv)
        assert env.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
        assert env.num_envs == 3 and env.spec.id == ENV_ID
    assert isinstance(native(2, map="4x4", one_hot=True, render_mode="rgb_array"), FrozenLakeVectorEnv)


@pytest.mark.parametrize("kwargs", [{}, {"one_hot": True}, {"map": "4x4", "slippery": True}], ids=str)
def test_spaces_shapes_and_dtypes_are_those_of_sync_vector_env(kwargs):
    env, reference = native(4, **kwargs), sync(4, **kwargs)
    for name in ("single_observation_space", "observation_space", "single_action_space", "action_space"):
        assert getattr(env, name) == getattr(reference, name), name
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs.dtype == env.single_observation_space.dtype
    assert data_equivalence(info, reference.reset(seed=0)[1], exact=True)
    env.action_space.seed(0)
    for _ in range(30):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert reward.dtype == np.float64 and terminated.dtype == truncated.dtype == np.bool_
        assert reward.shape == terminated.shape == truncated.shape == (4,)
        assert set(info) == {"prob", "_prob"} and info["prob"].shape == (4,) and info["_prob"].all()


@pytest.mark.parametrize(
    ("num_envs", "kwargs"),
    [
        (16, {"map": "paper"}),  # deterministic: any number of copies steps exactly as SyncVectorEnv
        (8, {"map": "bridge-3x8", "one_hot": True, "max_episode_steps": 7}),  # truncation, one-hot observations
        (1, {"map": "4x4", "slippery": True, "success_rate": 0.6, "max_episode_steps": 9}),  # one copy: same draws
    ],
    ids=["paper", "one-hot-truncated", "slippery-one-copy"],
)
def test_steps_exactly_as_sync_vector_env_of_the_single_env(num_envs, kwargs):
    env, reference = native(num_envs, **kwargs), sync(num_envs, **kwargs)
    assert data_equivalence(env.reset(seed=5), reference.reset(seed=5), exact=True)
    actions = np.random.default_rng(1).integers(0, 4, (300, num_envs))
    ended = 0
    for action in actions:
        out = env.step(action)
        assert data_equivalence(out, reference.step(action), exact=True)
        ended += int((out[2] | out[3]).sum())
    assert ended > 10  # the comparison went through many autoresets


def test_one_copy_follows_the_single_env_seeded_alike():
    env, single = native(1, map="8x8", slippery=True), gym.make(ENV_ID, map="8x8", slippery=True)
    obs, _ = env.reset(seed=11)
    assert obs.tolist() == [single.reset(seed=11)[0]]
    single_ended = False
    for action in np.random.default_rng(2).integers(0, 4, 2000):
        obs, reward, terminated, truncated, info = env.step(np.array([action]))
        if single_ended:  # the vector copy resets on this step; the single env resets without a seed
            assert (obs[0], reward[0], terminated[0], truncated[0]) == (single.reset()[0], 0.0, False, False)
            single_ended = False
            continue
        expected = single.step(int(action))
        assert (obs[0], reward[0], terminated[0], truncated[0], info["prob"][0]) == (*expected[:4], expected[4]["prob"])
        single_ended = expected[2] or expected[3]


def test_next_step_autoreset_and_truncation():
    env = native(3, map=["SFG"], max_episode_steps=2)
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [0, 0, 0]
    obs, reward, terminated, truncated, _ = env.step(np.array([RIGHT, LEFT, RIGHT]))
    assert (obs.tolist(), reward.tolist(), terminated.tolist(), truncated.tolist()) == (
        [1, 0, 1], [0, 0, 0], [False, False, False], [False, False, False])  # fmt: skip
    obs, reward, terminated, truncated, _ = env.step(np.array([RIGHT, LEFT, LEFT]))
    assert (obs.tolist(), reward.tolist(), terminated.tolist(), truncated.tolist()) == (
        [2, 0, 0], [1, 0, 0], [True, False, False], [False, True, True])  # fmt: skip
    # every copy ended: each resets, ignoring its action, observing the start with reward 0 and prob 1
    obs, reward, terminated, truncated, info = env.step(np.array([RIGHT, RIGHT, RIGHT]))
    assert (obs.tolist(), reward.tolist(), terminated.any(), truncated.any()) == ([0, 0, 0], [0, 0, 0], False, False)
    assert info["prob"].tolist() == [1, 1, 1]
    obs, *_ = env.step(np.array([RIGHT, RIGHT, LEFT]))
    assert obs.tolist() == [1, 1, 0]


def test_reset_mask_resets_only_the_masked_copies():
    env = native(3, map="paper")
    env.reset(seed=0)
    env.step(np.array([DOWN, RIGHT, RIGHT]))
    obs, info = env.reset(options={"reset_mask": np.array([False, True, False])})
    assert obs.tolist() == [6, 0, 1]
    assert info["prob"].tolist() == [0, 1, 0] and info["_prob"].tolist() == [False, True, False]
    assert env.step(np.array([DOWN, DOWN, DOWN]))[0].tolist() == [12, 6, 7]


def test_seeding_is_reproducible():
    def run(env, seed):
        out = [env.reset(seed=seed)]
        for action in np.random.default_rng(0).integers(0, 4, (50, env.num_envs)):
            out.append(env.step(action))
        return out

    env = native(64, map="8x8", slippery=True)
    first = run(env, 3)
    assert data_equivalence(run(env, 3), first, exact=True)
    assert data_equivalence(run(native(64, map="8x8", slippery=True), 3), first, exact=True)
    assert not data_equivalence(run(env, 4), first, exact=True)
    obs = first[1][0]
    assert len(set(obs.tolist())) > 1  # the copies draw different moves


def test_returned_arrays_are_not_reused():
    env = native(8, map="4x4", one_hot=True)
    obs, _ = env.reset(seed=0)
    kept = obs.copy()
    step = env.step(np.full(8, RIGHT))
    assert (obs == kept).all()
    kept = [x.copy() for x in step[:4]]
    env.step(np.full(8, DOWN))
    assert all((x == k).all() for x, k in zip(step[:4], kept))


def test_slippery_transition_frequencies_match_the_model():
    model = FrozenLakeMDP.from_map("paper", slippery=True, success_rate=0.5)
    env = native(20_000, map="paper", slippery=True, success_rate=0.5)
    obs, _ = env.reset(seed=0)
    counts = np.zeros((model.n_states, 4, model.n_states))
    moving = np.ones(env.num_envs, dtype=bool)
    rng = np.random.default_rng(1)
    for _ in range(40):
        actions = rng.integers(0, 4, env.num_envs)
        nxt, _, terminated, truncated, _ = env.step(actions)
        np.add.at(counts, (obs[moving], actions[moving], nxt[moving]), 1)
        obs, moving = nxt, ~(terminated | truncated)
    n = counts.sum(-1, keepdims=True)
    seen = n[..., 0] >= 50
    assert seen.sum() >= 50  # of the 19 x 4 pairs from cells that are neither hole nor goal
    p = model.P[seen]
    freq = counts[seen] / n[seen]
    assert (np.abs(freq - p) <= SIGMAS * np.sqrt(p * (1 - p) / n[seen])).all()


def test_deterministic_steps_are_the_model_step():
    model = FrozenLakeMDP.from_map("lake-10x10")
    env = native(512, map="lake-10x10")
    obs, _ = env.reset(seed=0)
    moving = np.ones(env.num_envs, dtype=bool)
    for actions in np.random.default_rng(0).integers(0, 4, (60, env.num_envs)):
        nxt, reward, terminated, truncated, info = env.step(actions)
        expected = np.where(moving, model.step(obs, actions, np.zeros(env.num_envs)), model.start)
        assert (nxt == expected).all() and (info["prob"] == 1).all()
        assert (reward == (model.goal_mask[nxt] & moving)).all()
        assert (terminated == (model.terminal[nxt] & moving)).all()
        obs, moving = nxt, ~(terminated | truncated)


def _first_episodes(env, n, rng):
    """Returns and lengths of the first episode of each of the vector env's copies under uniform random actions."""
    env.reset(seed=0)
    returns, lengths, done = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
    while not done.all():
        _, reward, terminated, truncated, _ = env.step(rng.integers(0, 4, n))
        returns += reward * ~done
        lengths += ~done
        done |= terminated | truncated
    return returns, lengths


def test_episode_statistics_match_the_single_env():
    n, rng = 4000, np.random.default_rng(0)
    vector = _first_episodes(native(n, map="4x4", slippery=True), n, rng)
    single_env = FrozenLakeEnv(map="4x4", slippery=True)
    single_env.reset(seed=1)
    returns, lengths = np.zeros(n), np.zeros(n)
    for i in range(n):
        single_env.reset()
        for _ in range(single_env.max_episode_steps):
            _, reward, terminated, truncated, _ = single_env.step(int(rng.integers(4)))
            returns[i] += reward
            lengths[i] += 1
            if terminated or truncated:
                break
    for v, s in zip(vector, (returns, lengths)):
        assert abs(v.mean() - s.mean()) <= SIGMAS * np.sqrt((v.var() + s.var()) / n)
    assert 0 < returns.mean() < 0.1  # random play on slippery 4x4 rarely succeeds, so the comparison means something


def test_render_one_frame_per_copy():
    env = native(3, map="bridge-3x8", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.array([RIGHT, LEFT, RIGHT]))
    frames = env.render()
    single = FrozenLakeEnv(map="bridge-3x8")
    for frame, state in zip(frames, env.state):
        single.state = int(state)
        np.testing.assert_array_equal(frame, single.render_rgb())
    text = native(2, map=["SFG", "FHF"], render_mode="ansi")
    text.reset(seed=0)
    text.step(np.array([RIGHT, DOWN]))
    assert text.render() == ("S*G\nFHF\n", "SFG\n*HF\n")
    assert native(2).render() is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_envs": 0}, r"num_envs=0 is out of range: expected at least 1$"),
        ({"render_mode": "human"}, r"render_mode='human' is not supported: expected one of 'ansi', 'rgb_array'$"),
        ({"one_hot": "yes"}, r"one_hot='yes' is str: expected True or False$"),
        ({"max_episode_steps": 0}, r"max_episode_steps=0 is out of range: expected at least 1$"),
        ({"map": "nowhere"}, r"unknown map 'nowhere'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        FrozenLakeVectorEnv(**{"num_envs": 2, **kwargs})


def test_bad_calls():
    env = native(2)
    env.reset(seed=0, options={})
    shape = r"expected an integer array of shape \(2,\) in 0..3 \(LEFT, DOWN, RIGHT, UP\)$"
    bad = [([0, 4], r"\(2,\) and dtype int64"), ([1], r"\(1,\) and dtype int64"),
           (np.array([True, False]), r"\(2,\) and dtype bool"), ([0.0, 1.0], r"\(2,\) and dtype float64")]  # fmt: skip
    for actions, got in bad:
        with pytest.raises(ValueError, match=f"^actions of shape {got} are invalid: {shape}"):
            env.step(actions)
    with pytest.raises(ValueError, match=r"^seed=-1 is out of range: expected at least 0 \(or None\)$"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match=r"^options=\{'start': 3\} is not supported: expected None, \{\} or"):
        env.reset(options={"start": 3})
    with pytest.raises(ValueError, match=r"^reset_mask=\[True, False\] is not supported: expected a bool array"):
        env.reset(options={"reset_mask": [True, False]})
    with pytest.raises(ValueError, match=r"^reset_mask of shape \(3,\) and dtype bool is not supported: expected a "
                       r"bool array of shape \(2,\)$"):  # fmt: skip
        env.reset(options={"reset_mask": np.ones(3, dtype=bool)})
