"""iftgym/TokenGen-v0: Gymnasium and Stable-Baselines3 compatibility, episodes, rewards."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import iftgym  # noqa: F401  (registers the environments)
from iftgym.worlds.tokens import EOS, PAD
from iftgym.worlds.tokens.env import TokenGenEnv

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
