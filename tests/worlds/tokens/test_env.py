"""iftgym/TokenGen-v0: Gymnasium and Stable-Baselines3 compatibility, episodes, rewards."""

from __future__ import annotations

import gymnasium as gym
import matplotlib
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import iftgym  # noqa: F401  (registers the environments)
from iftgym.worlds.tokens import EOS, PAD
from iftgym.worlds.tokens.env import TokenGenEnv

matplotlib.use("Agg")  # no test opens a window: render_mode="human" is refused here unless a test allows it

SMALL = {"task": "sort", "length": 3, "n_train": 20, "n_test": 5}


def play(env: TokenGenEnv, answer: str) -> tuple[list[float], bool, dict]:
    rewards, terminated, info = [], False, {}
    for token in [*env.world.tokenizer.encode(answer), EOS]:
        _, reward, terminated, truncated, info = env.step(token)
        rewards.append(reward)
        assert not truncated
        if terminated:
            break
    return rewards, terminated, info


def test_registered_and_passes_check_env():
    env = gym.make("iftgym/TokenGen-v0", **SMALL)
    check_env(env.unwrapped)
    assert isinstance(env.unwrapped, TokenGenEnv)


def test_passes_stable_baselines3_check_env():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(TokenGenEnv(**SMALL))


def test_observation_is_the_padded_sequence_and_its_length():
    env = TokenGenEnv(**SMALL)
    obs, info = env.reset(seed=0, options={"index": 2})
    prompt = env.examples[2].prompt
    assert info["prompt"] == prompt and obs["length"] == len(prompt) + 1
    assert obs["tokens"].shape == (env.world.block_size,) and (obs["tokens"][obs["length"] :] == PAD).all()
    obs, *_ = env.step(5)
    assert obs["length"] == len(prompt) + 2 and obs["tokens"][len(prompt) + 1] == 5


def test_correct_answer_earns_the_reward_at_the_end():
    env = TokenGenEnv(render_mode="ansi", **SMALL)
    env.reset(seed=0, options={"index": 0})
    rewards, terminated, info = play(env, env.examples[0].completion)
    assert terminated and rewards == [0.0] * (len(rewards) - 1) + [1.0] and info["success"] == 1.0
    assert env.render() == env.examples[0].prompt + env.examples[0].completion + "<eos>\n"
    env.reset(options={"index": 0})
    rewards, terminated, info = play(env, env.examples[0].rejected)
    assert terminated and sum(rewards) == 0.0 and info["success"] == 0.0


def test_per_token_reward_and_the_length_limit():
    env = TokenGenEnv(reward="token", **SMALL)
    env.reset(seed=0, options={"index": 1})
    rewards, _, _ = play(env, env.examples[1].completion)
    assert np.isclose(sum(rewards), 1.0) and len(set(rewards)) == 1
    env.reset(options={"index": 1})
    digit = env.world.tokenizer.encode("1")[0]
    for step in range(env.world.max_answer_tokens):
        _, reward, terminated, truncated, info = env.step(digit)
        # the length limit truncates the episode (Gymnasium): only <eos> terminates it
        assert not terminated and truncated == (step == env.world.max_answer_tokens - 1)
    assert reward == 0.0 and info == {"answer": "1" * env.world.max_answer_tokens, "success": 0.0}
    with pytest.raises(ValueError, match="after the episode ended"):
        env.step(digit)
    with pytest.raises(ValueError, match="action 99 is invalid"):
        env.step(99)
    with pytest.raises(ValueError, match="index=50 is out of range"):
        env.reset(options={"index": 50})
    with pytest.raises(ValueError, match=r"index=1\.5 is out of range: expected an integer"):
        env.reset(options={"index": 1.5})


def test_an_answer_ending_with_eos_at_the_length_limit_terminates():
    env = TokenGenEnv(**SMALL)
    env.reset(seed=0, options={"index": 0})
    digit = env.world.tokenizer.encode("1")[0]
    for _ in range(env.world.max_answer_tokens - 1):
        assert env.step(digit)[2:4] == (False, False)
    assert env.step(EOS)[2:4] == (True, False)
    with pytest.raises(ValueError, match="after the episode ended"):
        env.step(digit)


def test_stable_baselines3_ppo_smoke_training():
    from stable_baselines3 import PPO

    env = TokenGenEnv(**SMALL)
    model = PPO("MultiInputPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(int(action))


# -- rgb_array rendering and Stable-Baselines3's make_vec_env ---------------------------------------------------------
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_check_env_passes_with_render_checks(render_mode):
    import warnings

    env = gym.make("iftgym/TokenGen-v0", render_mode=render_mode, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped)  # renders every mode of metadata["render_modes"] too
    assert env.unwrapped.metadata["render_modes"] == ["ansi", "rgb_array"]


def test_render_rgb_array_draws_the_sequence_as_coloured_blocks():
    from iftgym.worlds.tokens.env import ANSWER_MARK, PROMPT_MARK, SPECIAL_COLOURS

    env = TokenGenEnv(render_mode="rgb_array", **SMALL)
    env.reset(seed=0, options={"index": 0})
    first = env.render()
    cell, length = 16, env.world.block_size
    assert first.dtype == np.uint8 and first.shape == (cell + cell // 4, length * cell, 3)
    prompt = env.world.prompt_ids(env.examples[0].prompt)
    centre = lambda image, position: image[cell // 2, position * cell + cell // 2].tolist()  # noqa: E731
    assert centre(first, 0) == list(SPECIAL_COLOURS[1])  # <bos>: white
    assert centre(first, len(prompt)) == list(SPECIAL_COLOURS[PAD])  # padding after the prompt
    assert len({tuple(centre(first, i)) for i in range(1, len(prompt))}) == len(set(prompt[1:]))  # one colour a char
    env.step(prompt[1])
    env.step(EOS)
    last = env.render()
    assert last.shape == first.shape  # frames keep their size, as video recorders need
    assert centre(last, len(prompt)) == centre(first, 1)  # the character written has its colour in the prompt
    assert centre(last, len(prompt) + 1) == list(SPECIAL_COLOURS[EOS])
    band = last[cell + 1]
    assert band[cell // 2].tolist() == list(PROMPT_MARK) and band[(len(prompt) + 1) * cell].tolist() == list(
        ANSWER_MARK
    )
    assert band[(len(prompt) + 2) * cell + 1].tolist() == list(SPECIAL_COLOURS[PAD])
    with pytest.raises(ValueError, match=r"^cell=1000 is out of range: expected at most 64$"):
        env.render_rgb(cell=1000)


def test_stable_baselines3_make_vec_env_builds_and_steps():
    # make_vec_env passes render_mode="rgb_array", which the env used to refuse
    from stable_baselines3.common.env_util import make_vec_env

    vec = make_vec_env("iftgym/TokenGen-v0", n_envs=2, seed=0, env_kwargs=SMALL)
    obs = vec.reset()
    assert obs["tokens"].shape == (2, vec.envs[0].unwrapped.world.block_size) and obs["length"].shape == (2,)
    for _ in range(8):  # past the end of an episode: the vec env resets it
        obs, rewards, dones, _ = vec.step(np.array([EOS, 5]))
    assert rewards.shape == dones.shape == (2,) and dones.any()
    assert vec.get_images()[0].shape == vec.envs[0].render().shape
    vec.close()


# -- bad arguments --------------------------------------------------------------------------------------------------
def test_bad_arguments_end_in_one_clear_line():
    from iftgym.worlds.tokens.tasks import SortTask

    with pytest.raises(ValueError, match=r"^unknown task 'nope': expected one of addition, sort"):
        TokenGenEnv(task="nope")
    with pytest.raises(
        ValueError, match=r"^task=5 is int: expected a task name \(addition, sort.*\) or an iftgym Task"
    ):
        TokenGenEnv(task=5)
    with pytest.raises(ValueError, match=r"^task options length only apply to a task given by name"):
        TokenGenEnv(task=SortTask(length=3, n_train=5, n_test=1), length=4)
    with pytest.raises(
        ValueError, match=r"^render_mode='human' is not supported: expected one of 'ansi', 'rgb_array' here"
    ):
        TokenGenEnv(render_mode="human", **SMALL)
    with pytest.raises(ValueError, match=r"^render_mode='rgb' is not supported: expected one of 'ansi', 'rgb_array'"):
        TokenGenEnv(render_mode="rgb", **SMALL)
    env = TokenGenEnv(**SMALL)
    for options in ({"index": -1}, {"index": True}):
        with pytest.raises(ValueError, match=r"^index=(-1|True) is out of range: expected an integer 0 <= index < 20"):
            env.reset(options=options)
    for options in ({"idx": 1}, [1]):
        with pytest.raises(ValueError, match=r"is not supported: expected None or a dict with the one key 'index'$"):
            env.reset(options=options)
    with pytest.raises(ValueError, match=r"^seed=1\.5 is float: expected an integer$"):
        env.reset(seed=1.5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"^action True is invalid: expected a token id in 0\.\.\d+$"):
        env.step(True)


# -- human rendering: refused up front without a display, as Frozen Lake's; drawn in one figure with one -------------
def test_human_mode_is_refused_when_made_not_at_reset(monkeypatch):
    monkeypatch.setattr("iftgym.worlds.frozen_lake.env.sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    message = (r"^render_mode='human' is not supported: expected one of 'ansi', 'rgb_array' here, since 'human' needs "
               r"an interactive matplotlib backend \(a display\) and there is no display")  # fmt: skip
    with pytest.raises(ValueError, match=message):  # Gymnasium hands 'human' to the env, no pygame wrapper
        gym.make("iftgym/TokenGen-v0", render_mode="human", **SMALL)
    assert TokenGenEnv(**SMALL).metadata["render_modes"] == ["ansi", "rgb_array"]
    assert TokenGenEnv.metadata["render_modes"] == ["ansi", "rgb_array", "human"]


def test_human_mode_draws_every_frame_in_one_figure(draws_in_one_window):
    draws_in_one_window(gym.make("iftgym/TokenGen-v0", render_mode="human", **SMALL), 3)  # a token, not <eos>


def test_check_env_passes_with_human_mode_available(window):
    import warnings

    env = gym.make("iftgym/TokenGen-v0", **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)  # makes and renders an env in each mode, 'human' included
    assert window  # the human env drew
