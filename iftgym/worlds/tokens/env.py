"""``iftgym/TokenGen-v0``: token generation as a Gymnasium environment, driven by :class:`TokenWorld`.

An episode answers one prompt of the task: each action appends a token; the episode terminates when the agent
writes ``<eos>`` and is truncated when the answer reaches the task's length limit without it (the answer is then
final, reward 0), as Gymnasium separates the two. Stepping past the end of an episode raises ``ValueError``. The
observation has a fixed size so that Stable-Baselines3 can consume it: ``{"tokens": the sequence <bos> + prompt +
answer so far, right-padded with <pad> to the longest possible sequence, "length": its real length}``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from iftgym.worlds.tokens.tasks import Task, make_task
from iftgym.worlds.tokens.tokenizer import EOS, PAD
from iftgym.worlds.tokens.world import TokenWorld


class TokenGenEnv(gym.Env):
    """Answer prompts of a token task one token at a time.

    Args:
        task: a task name (``"addition"``, ``"sort"``, ``"frozen-lake"``, ``"jsonl"``) or a :class:`Task`.
        split: ``"train"`` or ``"test"``: the prompts an episode draws from (uniformly, with the env's RNG).
        reward: ``"end"`` (the task's reward on the last token) or ``"token"`` (per-token, see :class:`TokenWorld`).
        render_mode: ``"ansi"`` (the prompt and the answer so far as text).
        **task_kwargs: passed to the task's constructor (``digits=2``, ``path="data.jsonl"``...).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task: str | Task = "addition",
        split: str = "train",
        reward: str = "end",
        render_mode: str | None = None,
        **task_kwargs: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported: expected 'ansi'")
        task = make_task(task, **task_kwargs) if isinstance(task, str) else task
        self.world = TokenWorld(task, reward=reward)
        self.examples = task.split(split)
        length = self.world.block_size
        self.observation_space = spaces.Dict({
            "tokens": spaces.MultiDiscrete(np.full(length, self.world.n_ids, dtype=np.int64)),
            "length": spaces.Discrete(length + 1),
        })  # fmt: skip
        self.action_space = spaces.Discrete(self.world.n_ids)
        self.render_mode = render_mode
        self.state = (self.world.prompt_ids(self.examples[0].prompt), ())

    def _obs(self) -> dict[str, Any]:
        sequence = (*self.state[0], *self.state[1])
        tokens = np.full(self.world.block_size, PAD, dtype=np.int64)
        tokens[: len(sequence)] = sequence
        return {"tokens": tokens, "length": len(sequence)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict]:
        """Start on a random prompt of the split, or on ``options={"index": i}``."""
        super().reset(seed=seed)
        index = (options or {}).get("index", int(self.np_random.integers(len(self.examples))))
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.examples):
            raise ValueError(f"index={index!r} is out of range: expected an integer 0 <= index < {len(self.examples)} "
                             f"(the split has {len(self.examples)} prompts)")  # fmt: skip
        prompt = self.examples[index].prompt
        self.state = (self.world.prompt_ids(prompt), ())
        return self._obs(), {"prompt": prompt}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is invalid: expected a token id in 0..{self.world.n_ids - 1}")
        state = self.state
        if self.world.is_terminal(state):
            raise ValueError("step() was called after the episode ended: call reset() first")
        self.state = next(iter(self.world.transition(state, int(action))))
        reward = self.world.reward(state, int(action), self.state)
        ended = self.world.is_terminal(self.state)
        terminated = ended and self.state[1][-1] == EOS
        info = {}
        if ended:
            info = {"answer": self.world.tokenizer.decode(self.state[1]),
                    "success": self.world.final_reward(*self.state)}  # fmt: skip
        return self._obs(), reward, terminated, ended and not terminated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        prompt, answer = self.state
        return f"{self.world.tokenizer.decode(prompt[1:])}{self.world.tokenizer.decode(answer)}\n"
