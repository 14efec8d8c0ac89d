"""``iftgym/FrozenLake-v0``: Gymnasium API compliance, observations, rendering, seeding, truncation, SB3."""

from __future__ import annotations

import warnings

import gymnasium as gym
import matplotlib
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import iftgym  # noqa: F401  (registers iftgym/FrozenLake-v0)
from iftgym.worlds.frozen_lake import env as env_module
from iftgym.worlds.frozen_lake.env import FrozenLakeEnv
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

matplotlib.use("Agg")  # no test opens a window: render_mode="human" is refused here unless a test allows it

LEFT, DOWN, RIGHT, UP = range(4)


ENV_ID = "iftgym/FrozenLake-v0"


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"one_hot": True},
        {"render_mode": "ansi"},
        {"render_mode": "rgb_array"},
        {"slippery": True},
        {"slippery": True, "success_rate": 0.8, "one_hot": True, "render_mode": "rgb_array"},
        {"map": "bridge-3x8"},
        {"map": ["SFFHF", "FHFFG"], "render_mode": "ansi"},
    ],
    ids=["default", "one_hot", "ansi", "rgb_array", "slippery", "slippery-all", "bridge-3x8", "rows-2x5"],
)
def test_check_env_passes(kwargs):
    env = gym.make(ENV_ID, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped)
    env.close()


def test_registered_and_spaces():
    assert ENV_ID in gym.registry
    env = gym.make(ENV_ID)
    assert isinstance(env.unwrapped, FrozenLakeEnv)
    assert env.observation_space == gym.spaces.Discrete(36)
    assert env.action_space == gym.spaces.Discrete(4)
    assert env.unwrapped.model.desc == FrozenLakeMDP.from_map("paper").desc
    one_hot = gym.make(ENV_ID, map="bridge-3x8", one_hot=True)
    assert one_hot.observation_space == gym.spaces.Box(0.0, 1.0, (24,), np.float32)


def test_discrete_and_one_hot_observations():
    env = gym.make(ENV_ID, map="paper")
    obs, info = env.reset(seed=0)
    assert obs == 0
    assert info == {"prob": 1.0}
    obs, reward, terminated, truncated, info = env.step(DOWN)
    assert (obs, reward, terminated, truncated, info) == (6, 0.0, False, False, {"prob": 1.0})

    env = gym.make(ENV_ID, map="paper", one_hot=True)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32
    assert obs.shape == (36,)
    assert obs.tolist() == np.eye(36, dtype=np.float32)[0].tolist()
    obs, *_ = env.step(RIGHT)
    assert int(obs.argmax()) == 1
    assert obs.sum() == 1.0


def test_optimal_demonstration_replays_in_the_env():
    mdp = FrozenLakeMDP.from_map("paper")
    demo = mdp.optimal_demonstration()
    env = gym.make(ENV_ID, map="paper")
    obs, _ = env.reset(seed=1)
    states, rewards = [obs], []
    for action in demo.actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        states.append(obs)
        rewards.append(reward)
    assert tuple(states) == demo.states
    assert tuple(rewards) == demo.rewards
    assert terminated
    assert not truncated


def test_falling_into_a_hole_terminates_with_zero_reward():
    env = gym.make(ENV_ID, map="paper")
    env.reset(seed=0)
    env.step(RIGHT)
    obs, reward, terminated, truncated, _ = env.step(DOWN)
    assert (obs, reward, terminated, truncated) == (7, 0.0, True, False)


def test_slippery_step_reports_the_transition_probability():
    env = gym.make(ENV_ID, map="4x4", slippery=True, success_rate=0.5)
    env.reset(seed=3)
    probs = set()
    for _ in range(30):
        env.reset()
        _, _, _, _, info = env.step(RIGHT)  # from S: right 1/2, down 1/4, stay (up) 1/4
        probs.add(info["prob"])
    assert probs == {0.5, 0.25}


def _episode(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            break
    return out


def test_episodes_are_reproducible_with_the_same_seed():
    env = gym.make(ENV_ID, map="8x8", slippery=True)
    actions = [RIGHT, DOWN] * 50
    first = _episode(env, 42, actions)
    assert _episode(env, 42, actions) == first
    assert _episode(gym.make(ENV_ID, map="8x8", slippery=True), 42, actions) == first
    others = {tuple(_episode(env, seed, actions)) for seed in range(10)}
    assert len(others) > 1


def test_truncation_at_max_episode_steps():
    # The env's own limit.
    env = FrozenLakeEnv(map="paper", max_episode_steps=5)
    env.reset(seed=0)
    for step in range(1, 6):
        _, _, terminated, truncated, _ = env.step(LEFT)  # bumps into the wall forever
        assert not terminated
        assert truncated == (step == 5)
    # The default limit: four steps a cell, at least 100.
    assert FrozenLakeEnv(map="paper").max_episode_steps == 144
    assert FrozenLakeEnv(map="4x4").max_episode_steps == 100
    env = gym.make(ENV_ID, map="4x4")
    env.reset(seed=0)
    flags = [env.step(LEFT)[3] for _ in range(100)]
    assert flags == [False] * 99 + [True]
    # gym.make's own max_episode_steps (a TimeLimit wrapper) also works.
    env = gym.make(ENV_ID, map="paper", max_episode_steps=3)
    env.reset(seed=0)
    assert [env.step(UP)[3] for _ in range(3)] == [False, False, True]


def test_reaching_the_goal_on_the_last_step_is_termination_not_truncation():
    env = FrozenLakeEnv(map=["SG"], max_episode_steps=1)
    env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step(RIGHT)
    assert (reward, terminated, truncated) == (1.0, True, False)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"render_mode='human' is not supported: expected one of 'ansi', 'rgb_array'"):
        FrozenLakeEnv(render_mode="human")
    with (
        pytest.warns(UserWarning, match="not in the possible render_modes"),
        pytest.raises(ValueError, match="render_mode='rgb' is not supported"),
    ):
        gym.make(ENV_ID, render_mode="rgb")
    with pytest.raises(ValueError, match=r"max_episode_steps=0 is out of range"):
        FrozenLakeEnv(max_episode_steps=0)
    with pytest.raises(ValueError, match=r"success_rate=0 is out of range"):
        FrozenLakeEnv(slippery=True, success_rate=0)
    with pytest.raises(ValueError, match=r"unknown map 'nowhere'"):
        FrozenLakeEnv(map="nowhere")
    env = FrozenLakeEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 4 is invalid: expected an integer in 0..3"):
        env.step(4)


def test_render_ansi():
    env = gym.make(ENV_ID, map=["SFG", "FHF"], render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str)
    assert text == "*FG\nFHF\n"
    env.step(RIGHT)
    assert env.render() == "S*G\nFHF\n"


def test_render_rgb_array():
    env = gym.make(ENV_ID, map="bridge-3x8", render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8
    assert image.shape == (3 * 32, 8 * 32, 3)
    # The agent square sits in the start cell; it moves with the agent.
    agent = np.array([230, 80, 60], dtype=np.uint8)
    assert (image[16, 16] == agent).all()
    env.step(RIGHT)
    moved = env.render()
    assert not (moved[16, 16] == agent).all()
    assert (moved[16, 48] == agent).all()
    # A hole cell (row 1, column 0) has the hole colour away from the grid lines.
    assert moved[48, 16].tolist() == [40, 50, 80]


def test_render_without_mode_returns_none():
    env = FrozenLakeEnv()
    env.reset(seed=0)
    assert env.render() is None


def test_episode_success_rate_is_one_for_optimal_policy_on_deterministic_map():
    mdp = FrozenLakeMDP.from_map("lake-10x10")
    policy = mdp.optimal_policy()
    env = gym.make(ENV_ID, map="lake-10x10")
    obs, _ = env.reset(seed=0)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(int(policy[obs].argmax()))
        total += reward
        steps += 1
        if terminated or truncated:
            break
    assert total == 1.0
    assert terminated
    assert steps == len(mdp.optimal_route()) - 1


def test_stable_baselines3_ppo_trains_and_predicts():
    from stable_baselines3 import PPO

    env = gym.make(ENV_ID, map="4x4", one_hot=True)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu", verbose=0)
    model.learn(256)
    assert model.num_timesteps == 256
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))
    _, _, _, _, info = env.step(action)
    assert info["prob"] == 1.0


# -- human rendering: refused without a display, drawn in one matplotlib figure with one ---------------------------
def test_human_mode_is_refused_without_a_display(monkeypatch):
    monkeypatch.setattr(env_module.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    advice = r"use render_mode='rgb_array' or 'ansi', or run where a display is available$"
    with pytest.raises(ValueError, match=r"^render_mode='human' .*interactive matplotlib backend \(a display\) and "
                       r"there is no display \(DISPLAY and WAYLAND_DISPLAY are unset\); " + advice):  # fmt: skip
        FrozenLakeEnv(render_mode="human")
    monkeypatch.setenv("DISPLAY", ":0")  # a display, but matplotlib draws with Agg (forced above)
    agg = r"matplotlib's backend '[Aa]gg' is non-interactive; "
    with pytest.raises(ValueError, match=r"^render_mode='human' .* and " + agg + advice):
        gym.make(ENV_ID, render_mode="human")
    # the modes this env can use here: what Gymnasium's check_env tries (it passes above without 'human')
    assert FrozenLakeEnv().metadata["render_modes"] == ["ansi", "rgb_array"]
    assert FrozenLakeEnv.metadata["render_modes"] == ["ansi", "rgb_array", "human"]


@pytest.mark.parametrize(("backend", "display"), [("TkAgg", True), ("QtAgg", True), ("module://my_backend", True)])
def test_interactive_backends_with_a_display_allow_human_mode(monkeypatch, backend, display):
    monkeypatch.setattr(env_module.sys, "platform", "linux")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.setattr(matplotlib, "get_backend", lambda: backend)
    assert env_module.human_display_problem() is None
    monkeypatch.setattr(matplotlib, "get_backend", lambda: "pdf")
    assert env_module.human_display_problem() == "matplotlib's backend 'pdf' is non-interactive"


def test_human_mode_draws_every_frame_in_one_figure(draws_in_one_window):
    draws_in_one_window(gym.make(ENV_ID, map="bridge-3x8", render_mode="human"), RIGHT)


def test_check_env_passes_with_human_mode_available(window):
    env = gym.make(ENV_ID, map="4x4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)  # makes and renders an env in each mode, 'human' included
    assert window  # the human env drew


def test_stable_baselines3_make_vec_env_builds_and_steps():
    from stable_baselines3.common.env_util import make_vec_env

    vec = make_vec_env(ENV_ID, n_envs=2, seed=0, env_kwargs={"map": "4x4"})  # render_mode="rgb_array" by default
    assert vec.reset().tolist() == [0, 0]
    obs, rewards, dones, _ = vec.step(np.array([DOWN, RIGHT]))
    assert obs.tolist() == [4, 1] and rewards.tolist() == [0.0, 0.0] and not dones.any()
    assert vec.get_images()[0].shape == (4 * 32, 4 * 32, 3)
    vec.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"map": 5}, r"map=5 is int: expected a catalogue name, a path to a map file, or a list of row strings$"),
        ({"map": None}, r"map=None is NoneType: expected a catalogue name"),
        ({"map": b"SG"}, r"map=b'SG' is bytes: expected a catalogue name"),
        ({"slippery": "yes"}, r"slippery='yes' is str: expected True or False$"),
        ({"one_hot": "no"}, r"one_hot='no' is str: expected True or False$"),
        ({"success_rate": float("nan"), "slippery": True}, r"success_rate=nan is out of range"),
        ({"max_episode_steps": 2.7}, r"max_episode_steps=2\.7 is float: expected an integer$"),
        ({"max_episode_steps": "10"}, r"max_episode_steps='10' is str: expected an integer$"),
        ({"max_episode_steps": True}, r"max_episode_steps=True is bool: expected an integer$"),
        ({"render_mode": ["ansi"]}, r"render_mode=\['ansi'\] is not supported: expected one of 'ansi', 'rgb_array', "
         r"'human'$"),
    ],
)  # fmt: skip
def test_more_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        FrozenLakeEnv(**kwargs)


def test_bad_calls():
    env = FrozenLakeEnv(render_mode="rgb_array")
    with pytest.raises(ValueError, match=r"^options=\{'start': 3\} is not supported: iftgym/FrozenLake-v0 takes no"):
        env.reset(options={"start": 3})
    with pytest.raises(ValueError, match=r"^seed=-1 is out of range: expected at least 0 \(or None\)$"):
        env.reset(seed=-1)
    env.reset(seed=0, options={})
    with pytest.raises(ValueError, match=r"^action True is invalid: expected an integer in 0..3"):
        env.step(True)
    with pytest.raises(ValueError, match=r"^cell=0 is out of range: expected at least 4$"):
        env.render_rgb(cell=0)
    with pytest.raises(ValueError, match=r"^cell=1000000 is out of range: expected at most 128$"):
        env.render_rgb(cell=10**6)


# -- the per-step fast path: the same moves, draws and infos as FrozenLakeMDP.step --------------------------------
@pytest.mark.parametrize("success_rate", [1 / 3, 0.8, 0.1])
def test_step_one_is_the_model_step(success_rate):
    model = FrozenLakeMDP.from_map(["SFFH", "FHFF", "FFFG"], slippery=True, success_rate=success_rate)
    rng = np.random.default_rng(0)
    states, actions = np.divmod(np.arange(model.n_states * 4).repeat(30), 4)
    steps = model.next_cdf[states, actions, rng.integers(0, 3, len(states))]  # draws on the CDF's steps and beside
    states, actions = np.tile(states, 3), np.tile(actions, 3)
    u = np.concatenate([rng.random(len(steps)), steps, np.nextafter(steps, 1)])
    got = [model.step_one(int(s), int(a), float(x)) for s, a, x in zip(states, actions, u)]
    assert got == model.step(states, actions, u).tolist() and all(type(cell) is int for cell in got)


def test_steps_are_the_model_steps_with_the_same_draws():
    env = FrozenLakeEnv(map="8x8", slippery=True, success_rate=0.6, max_episode_steps=30)
    model = env.model
    env.reset(seed=7)
    draws = np.random.default_rng(7)  # the env's generator, seeded as Gymnasium seeds it
    state, count = model.start, 0
    for action in np.random.default_rng(1).integers(0, 4, 3000).tolist():
        nxt = model.step(state, action, draws.random())
        count += 1
        obs, reward, terminated, truncated, info = env.step(action)
        assert (obs, reward, terminated, truncated) == (nxt, model.reward(state, action, nxt), model.terminal[nxt],
                                                        not model.terminal[nxt] and count == 30)  # fmt: skip
        assert type(obs) is int and type(reward) is float and info == {"prob": model.transition(state, action)[nxt]}
        state = nxt
        if terminated or truncated:
            env.reset()
            state, count = model.start, 0


def test_numpy_integer_actions_are_accepted():
    env = FrozenLakeEnv(map="paper")
    env.reset(seed=0)
    assert [env.step(action)[0] for action in (np.int64(DOWN), np.array(RIGHT), np.uint8(DOWN))] == [6, 7, 7]
    for action in (1.0, -1, np.int64(4), np.array([1])):
        with pytest.raises(ValueError, match=r"^action .* is invalid: expected an integer in 0..3"):
            env.step(action)
