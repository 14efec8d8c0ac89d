"""``iftgym/FrozenLake-v0`` vectorised natively: N copies of the env stepped together by numpy array operations.

``gymnasium.make_vec("iftgym/FrozenLake-v0", num_envs=N)`` builds :class:`FrozenLakeVectorEnv` (the spec's
``vector_entry_point``, used by default and by ``vectorization_mode="vector_entry_point"``). Every copy follows the
single env's rules: each step of every copy is :meth:`FrozenLakeMDP.step` (called once on arrays of all copies), the
same rewards, termination in a hole or goal, truncation after ``max_episode_steps``, the same observations and
``prob`` info. A finished copy resets on the next step (Gymnasium's ``AutoresetMode.NEXT_STEP``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from iftgym.validate import at_least, one_of
from iftgym.worlds.frozen_lake.env import draw_frames, setup
from iftgym.worlds.frozen_lake.maps import MapLike


class FrozenLakeVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~iftgym.worlds.frozen_lake.env.FrozenLakeEnv`, stepped as arrays.

    Args:
        num_envs: the number of copies N.
        map, slippery, success_rate, one_hot, max_episode_steps: as for the single env.
        render_mode: ``"ansi"`` or ``"rgb_array"``: :meth:`render` returns one frame per copy, as Gymnasium's vector
            envs do (so its vector wrappers, such as ``RecordVideo``, work); no ``"human"`` window.

    Observations are a ``(N,)`` int64 array of cells (``(N, n_states)`` float32 one-hot rows with ``one_hot``),
    rewards ``(N,)`` float64, terminations and truncations ``(N,)`` bool. After a step that ends a copy's episode,
    the next step resets that copy instead of moving it: its action is ignored, it observes the start cell with
    reward 0, ``terminated = truncated = False``, and ``prob`` 1 (Gymnasium's ``AutoresetMode.NEXT_STEP``). ``info``
    holds ``prob`` (the probability of each copy's transition, as the single env's) and ``_prob`` (which copies
    report one), as Gymnasium batches infos.

    Seeding: one generator drives every copy. ``reset(seed=s)`` seeds it as the single env's ``reset(seed=s)`` does,
    and each step draws one uniform for every copy that moves, in copy order. So the same seed, number of copies and
    actions give the same episodes, and with ``num_envs=1`` the copy follows the single env seeded with ``s`` (and
    reset without a seed between episodes) step for step.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        map: MapLike = "paper",
        slippery: bool = False,
        success_rate: float = 1 / 3,
        one_hot: bool = False,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        at_least("num_envs", num_envs, 1)
        if render_mode is not None:
            one_of("render_mode", render_mode, self.metadata["render_modes"])
        self.model, self.max_episode_steps, self.single_observation_space = setup(
            map, slippery, success_rate, one_hot, max_episode_steps
        )
        self.num_envs = int(num_envs)
        self.one_hot = bool(one_hot)
        self.render_mode = render_mode
        self.single_action_space = spaces.Discrete(4)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.state = np.full(self.num_envs, self.model.start, dtype=np.int64)
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.ended = np.zeros(self.num_envs, dtype=bool)  # episodes that ended on the last step: they reset next
        # the successors as (3, 4 S) tables, column 4 s + a, for the transitions' probabilities (fast to gather)
        self._cells = np.ascontiguousarray(self.model.next_cells.reshape(-1, 3).T)
        self._probs = np.ascontiguousarray(self.model.next_probs.reshape(-1, 3).T)

    def _obs(self) -> np.ndarray:
        if self.one_hot:
            obs = np.zeros((self.num_envs, self.model.n_states), dtype=np.float32)
            obs[np.arange(self.num_envs), self.state] = 1.0
            return obs
        return self.state.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every copy, or with ``options={"reset_mask": mask}`` (a ``(num_envs,)`` bool array) the copies where
        ``mask`` is true; ``seed`` reseeds the one generator of all copies."""
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and (not isinstance(options, dict) or set(options) - {"reset_mask"}):
            raise ValueError(f"options={options!r} is not supported: expected None, {{}} or {{'reset_mask': a bool "
                             f"array of shape ({self.num_envs},)}}")  # fmt: skip
        if options and "reset_mask" in options:
            mask = options["reset_mask"]
            if not isinstance(mask, np.ndarray) or mask.dtype != bool or mask.shape != (self.num_envs,):
                got = f" of shape {mask.shape} and dtype {mask.dtype}" if isinstance(mask, np.ndarray) else f"={mask!r}"
                raise ValueError(f"reset_mask{got} is not supported: expected a bool array of shape ({self.num_envs},)")
        if seed is not None:  # Gymnasium's own check raises its own error class, not ValueError
            at_least("seed", seed, 0, note="or None")
        super().reset(seed=seed)
        self.state[mask], self.steps[mask], self.ended[mask] = self.model.start, 0, False
        return self._obs(), {"prob": mask.astype(float), "_prob": mask.copy()}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Move every copy with its action (an integer array of shape ``(num_envs,)`` in 0..3), except the copies
        whose episode ended on the last step: they reset."""
        actions = np.asarray(actions)
        if (actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer)
                or actions.min() < 0 or actions.max() > 3):  # fmt: skip
            raise ValueError(f"actions of shape {actions.shape} and dtype {actions.dtype} are invalid: expected an "
                             f"integer array of shape ({self.num_envs},) in 0..3 (LEFT, DOWN, RIGHT, UP)")  # fmt: skip
        resetting = self.ended  # these copies' episodes ended on the last step: they reset, ignoring their action
        u = np.zeros(self.num_envs)
        u[~resetting] = self.np_random.random(self.num_envs - np.count_nonzero(resetting))
        moved = self.model.step(self.state, actions, u)
        columns = 4 * self.state + actions
        prob = ((self._cells.take(columns, 1) == moved) * self._probs.take(columns, 1)).sum(0)
        self.state = np.where(resetting, self.model.start, moved)
        self.steps = np.where(resetting, 0, self.steps + 1)
        # A moving copy left a cell that is neither hole nor goal, so it is rewarded for entering a goal (the model's
        # reward); a resetting copy is at the start after 0 steps: reward 0, neither terminated nor truncated.
        reward = self.model.goal_mask[self.state].astype(float)
        terminated = self.model.terminal[self.state]
        truncated = ~terminated & (self.steps >= self.max_episode_steps)
        self.ended = terminated | truncated
        info = {"prob": np.where(resetting, 1.0, prob), "_prob": np.ones(self.num_envs, dtype=bool)}
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> tuple[str | np.ndarray, ...] | None:
        """One frame per copy: its text (``"ansi"``) or image (``"rgb_array"``, as the single env's); ``None`` without
        a render mode."""
        if self.render_mode == "ansi":
            return tuple(self.model.render_text(int(state)) + "\n" for state in self.state)
        if self.render_mode == "rgb_array":
            return tuple(draw_frames(self.model, self.state))
        return None
