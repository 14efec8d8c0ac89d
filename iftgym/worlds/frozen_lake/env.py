"""``iftgym/FrozenLake-v0``: a Gymnasium environment driven by the exact :class:`FrozenLakeMDP`.

Same dynamics as Gymnasium's ``FrozenLake-v1`` (so every exact number of the model applies to episodes of this
env): each step is :meth:`FrozenLakeMDP.step_one` (the model's :meth:`~FrozenLakeMDP.step` for one state, without
numpy's per-call costs) with one uniform draw of the env's generator. Plus one-hot observations for neural policies
and rendering that needs no pygame: text, an image, or that image in a matplotlib window. ``gymnasium.make_vec``
builds N copies stepped as arrays (:mod:`iftgym.worlds.frozen_lake.vector_env`), from the checks (:func:`setup`) and
drawing (:func:`draw_frames`) defined here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from iftgym.validate import at_least, one_of
from iftgym.worlds.frozen_lake.maps import MapLike
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP
from iftgym.worlds.window import FrameWindow

TILE_COLOURS = {"S": (120, 170, 230), "F": (225, 240, 250), "H": (40, 50, 80), "G": (90, 200, 110)}
AGENT_COLOUR = (230, 80, 60)
WINDOW_TITLE = "iftgym/FrozenLake-v0"


def _interactive_backends() -> set[str]:
    """Names of matplotlib's built-in backends that open windows (lower case)."""
    try:  # matplotlib >= 3.9
        from matplotlib.backends import BackendFilter, backend_registry

        return {name.lower() for name in backend_registry.list_builtin(BackendFilter.INTERACTIVE)}
    except ImportError:
        from matplotlib import rcsetup

        return {name.lower() for name in rcsetup.interactive_bk}


def human_display_problem() -> str | None:
    """Why ``render_mode="human"`` cannot show a window here, or ``None`` when it can.

    Two checks, the cheap one first: on Linux a window needs an X11 or Wayland display (``DISPLAY`` or
    ``WAYLAND_DISPLAY``, as matplotlib itself decides it is headless), and anywhere matplotlib's backend must be an
    interactive one (resolving its automatic choice, which is Agg where no GUI toolkit works). A third-party
    backend (``module://...``, e.g. a notebook's) is trusted.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "there is no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    import matplotlib  # only asked when there may be a display: matplotlib is not imported on headless machines

    backend = str(matplotlib.get_backend())
    if backend.lower().startswith("module://") or backend.lower() in _interactive_backends():
        return None
    return f"matplotlib's backend {backend!r} is non-interactive"


def setup(
    map: MapLike, slippery: bool, success_rate: float, one_hot: bool, max_episode_steps: int | None
) -> tuple[FrozenLakeMDP, int, spaces.Space]:
    """Check the arguments the single and the vector env share: the model, the step limit (default ``4 * number of
    cells``, at least 100) and the observation space of one copy."""
    for name, flag in (("slippery", slippery), ("one_hot", one_hot)):
        if not isinstance(flag, (bool, np.bool_)):  # a string such as "no" would count as true
            raise ValueError(f"{name}={flag!r} is {type(flag).__name__}: expected True or False")
    if max_episode_steps is not None:
        at_least("max_episode_steps", max_episode_steps, 1)
    model = FrozenLakeMDP.from_map(map, slippery=bool(slippery), success_rate=success_rate)
    n = model.n_states
    limit = max(100, 4 * n) if max_episode_steps is None else int(max_episode_steps)
    return model, limit, spaces.Box(0.0, 1.0, (n,), np.float32) if one_hot else spaces.Discrete(n)


def draw_frames(model: FrozenLakeMDP, states: Iterable[int], cell: int = 32) -> list[np.ndarray]:
    """One ``(nrow*cell, ncol*cell, 3)`` uint8 image per state: the map, ``cell`` (4..128) pixels a cell, with the
    agent drawn as a square in that state's cell."""
    at_least("cell", cell, 4, high=128)
    background = np.zeros((model.nrow * cell, model.ncol * cell, 3), dtype=np.uint8)
    for row, line in enumerate(model.desc):
        for col, tile in enumerate(line):
            block = background[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
            block[:] = TILE_COLOURS[tile]
            block[0, :] = block[:, 0] = 160  # grid lines
    pad = cell // 4
    frames = []
    for state in states:
        row, col = divmod(int(state), model.ncol)
        image = background.copy()
        image[row * cell + pad : (row + 1) * cell - pad, col * cell + pad : (col + 1) * cell - pad] = AGENT_COLOUR
        frames.append(image)
    return frames


class FrozenLakeEnv(gym.Env):
    """Frozen Lake on any catalogue, file or list-of-rows map.

    Args:
        map: catalogue name, map file path, or rows of S/F/H/G.
        slippery: Gymnasium's ``is_slippery``.
        success_rate: probability of moving the intended way when slippery, in (0, 1].
        one_hot: observe a float32 one-hot vector instead of the cell index.
        max_episode_steps: truncate after this many steps (default ``4 * number of cells``, at least 100).
        render_mode: ``"ansi"`` (text), ``"rgb_array"`` (an image, 32 pixels a cell) or ``"human"`` (that image in a
            matplotlib window, updated in place at ``render_fps`` frames a second on every reset and step; it needs
            an interactive matplotlib backend and a display, see :func:`human_display_problem`, and is refused at
            construction without them).

    ``FrozenLakeEnv.metadata["render_modes"]`` lists every mode; an instance's ``metadata`` lists the modes it can
    use where it runs (``"human"`` only with a display), which is what Gymnasium's ``check_env`` tries.
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}

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
            one_of("render_mode", render_mode, FrozenLakeEnv.metadata["render_modes"])
        problem = human_display_problem()
        if render_mode == "human" and problem is not None:
            raise ValueError(f"render_mode='human' is not supported: expected one of 'ansi', 'rgb_array' here, since "
                             f"'human' needs an interactive matplotlib backend (a display) and {problem}; use "
                             "render_mode='rgb_array' or 'ansi', or run where a display is available")  # fmt: skip
        modes = [mode for mode in FrozenLakeEnv.metadata["render_modes"] if mode != "human" or problem is None]
        self.metadata = {**FrozenLakeEnv.metadata, "render_modes": modes}
        self.model, self.max_episode_steps, self.observation_space = setup(
            map, slippery, success_rate, one_hot, max_episode_steps
        )
        self.one_hot = bool(one_hot)
        self.action_space = spaces.Discrete(4)
        self.render_mode = render_mode
        self.state = self.model.start
        self.steps = 0
        self._window = FrameWindow(WINDOW_TITLE, self.metadata["render_fps"])  # human mode's figure
        self._transitions: dict[int, dict[int, float]] = {}  # model.transition(s, a) at key 4 s + a, on first use

    def _obs(self) -> Any:
        if self.one_hot:
            obs = np.zeros(self.model.n_states, dtype=np.float32)
            obs[self.state] = 1.0
            return obs
        return self.state

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        if options is not None and (not isinstance(options, dict) or options):
            raise ValueError(f"options={options!r} is not supported: iftgym/FrozenLake-v0 takes no reset options "
                             "(expected None or {})")  # fmt: skip
        if seed is not None:  # Gymnasium's own check raises its own error class, not ValueError
            at_least("seed", seed, 0, note="or None")
        super().reset(seed=seed)
        self.state = self.model.start
        self.steps = 0
        if self.render_mode == "human":
            self.render()
        return self._obs(), {"prob": 1.0}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        if type(action) is not int or not 0 <= action < 4:  # a plain int in range, the common case, skips the check
            if isinstance(action, bool) or not self.action_space.contains(action):
                raise ValueError(f"action {action!r} is invalid: expected an integer in 0..3 (LEFT, DOWN, RIGHT, UP)")
            action = int(action)
        state = self.state
        nxt = self.model.step_one(state, action, self.np_random.random())
        outcomes = self._transitions.get(4 * state + action)
        if outcomes is None:
            outcomes = self._transitions[4 * state + action] = self.model.transition(state, action)
        self.state = nxt
        self.steps += 1
        terminated = self.model.is_terminal(nxt)
        truncated = not terminated and self.steps >= self.max_episode_steps
        if self.render_mode == "human":
            self.render()
        return self._obs(), self.model.reward(state, action, nxt), terminated, truncated, {"prob": outcomes[nxt]}

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return self.model.render_text(self.state) + "\n"
        if self.render_mode == "rgb_array":
            return self.render_rgb()
        if self.render_mode == "human":
            self._show(self.render_rgb())
        return None

    def _show(self, frame: np.ndarray) -> None:
        """Draw ``frame`` in this env's window, sized to the map."""
        self._window.show(frame, (max(3.0, self.model.ncol * 0.5), max(3.0, self.model.nrow * 0.5)))

    def close(self) -> None:
        self._window.close()
        super().close()

    def render_rgb(self, cell: int = 32) -> np.ndarray:
        """The map as an ``(nrow*cell, ncol*cell, 3)`` uint8 image with the agent drawn as a square; ``cell`` is
        4..128 pixels."""
        return draw_frames(self.model, [self.state], cell)[0]
