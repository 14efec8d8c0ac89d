"""``iftgym/FrozenLake-v0``: a Gymnasium environment driven by the exact :class:`FrozenLakeMDP`.

Same dynamics as Gymnasium's ``FrozenLake-v1`` (so every exact number of the model applies to episodes of this
env): each step is :meth:`FrozenLakeMDP.step` with one uniform draw of the env's generator. Plus one-hot
observations for neural policies and rendering that needs no pygame.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from iftgym.validate import at_least, one_of
from iftgym.worlds.frozen_lake.maps import MapLike
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

TILE_COLOURS = {"S": (120, 170, 230), "F": (225, 240, 250), "H": (40, 50, 80), "G": (90, 200, 110)}
AGENT_COLOUR = (230, 80, 60)


class FrozenLakeEnv(gym.Env):
    """Frozen Lake on any catalogue, file or list-of-rows map.

    Args:
        map: catalogue name, map file path, or rows of S/F/H/G.
        slippery: Gymnasium's ``is_slippery``.
        success_rate: probability of moving the intended way when slippery, in (0, 1].
        one_hot: observe a float32 one-hot vector instead of the cell index.
        max_episode_steps: truncate after this many steps (default ``4 * number of cells``, at least 100).
        render_mode: ``"ansi"`` (text) or ``"rgb_array"`` (an image, 32 pixels a cell).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        map: MapLike = "paper",
        slippery: bool = False,
        success_rate: float = 1 / 3,
        one_hot: bool = False,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            one_of("render_mode", render_mode, self.metadata["render_modes"])
        self.model = FrozenLakeMDP.from_map(map, slippery=slippery, success_rate=success_rate)
        n = self.model.n_states
        self.max_episode_steps = max(100, 4 * n) if max_episode_steps is None else int(max_episode_steps)
        at_least("max_episode_steps", self.max_episode_steps, 1)
        self.one_hot = one_hot
        self.observation_space = spaces.Box(0.0, 1.0, (n,), np.float32) if one_hot else spaces.Discrete(n)
        self.action_space = spaces.Discrete(4)
        self.render_mode = render_mode
        self.state = self.model.start
        self.steps = 0

    def _obs(self) -> Any:
        if self.one_hot:
            obs = np.zeros(self.model.n_states, dtype=np.float32)
            obs[self.state] = 1.0
            return obs
        return int(self.state)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.state = self.model.start
        self.steps = 0
        return self._obs(), {"prob": 1.0}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is invalid: expected an integer in 0..3 (LEFT, DOWN, RIGHT, UP)")
        nxt = self.model.step(self.state, int(action), self.np_random.random())
        reward = self.model.reward(self.state, int(action), nxt)
        prob = float(self.model.P[self.state, int(action), nxt])
        self.state = nxt
        self.steps += 1
        terminated = self.model.is_terminal(nxt)
        truncated = not terminated and self.steps >= self.max_episode_steps
        return self._obs(), reward, terminated, truncated, {"prob": prob}

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return self.model.render_text(self.state) + "\n"
        if self.render_mode == "rgb_array":
            return self.render_rgb()
        return None

    def render_rgb(self, cell: int = 32) -> np.ndarray:
        """The map as an ``(nrow*cell, ncol*cell, 3)`` uint8 image with the agent drawn as a square."""
        image = np.zeros((self.model.nrow * cell, self.model.ncol * cell, 3), dtype=np.uint8)
        for row, line in enumerate(self.model.desc):
            for col, tile in enumerate(line):
                block = image[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
                block[:] = TILE_COLOURS[tile]
                block[0, :] = block[:, 0] = 160  # grid lines
        row, col = divmod(self.state, self.model.ncol)
        pad = cell // 4
        image[row * cell + pad : (row + 1) * cell - pad, col * cell + pad : (col + 1) * cell - pad] = AGENT_COLOUR
        return image
