"""``iftgym/TokenGen-v0``: token generation as a Gymnasium environment, driven by :class:`TokenWorld`.

An episode answers one prompt of the task: each action appends a token; the episode terminates when the agent
writes ``<eos>`` and is truncated when the answer reaches the task's length limit without it (the answer is then
final, reward 0), as Gymnasium separates the two. Stepping past the end of an episode raises ``ValueError``. The
observation has a fixed size so that Stable-Baselines3 can consume it: ``{"tokens": the sequence <bos> + prompt +
answer so far, right-padded with <pad> to the longest possible sequence, "length": its real length}``.

Rendering: ``"ansi"`` gives the prompt and the answer so far as text; ``"rgb_array"`` the same sequence as an image
(drawn with NumPy alone), which Stable-Baselines3's ``make_vec_env`` asks for and video recorders can save;
``"human"`` shows that image in a matplotlib window, as ``iftgym/FrozenLake-v0`` does, and is refused at construction
where no window can open (no display, or a non-interactive matplotlib backend).
"""

from __future__ import annotations

import colorsys
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from iftgym.validate import at_least, one_of
from iftgym.worlds.frozen_lake.env import human_display_problem
from iftgym.worlds.tokens.tasks import TASKS, Task, make_task
from iftgym.worlds.tokens.tokenizer import BOS, EOS, PAD, SPECIAL_TOKENS
from iftgym.worlds.tokens.world import TokenWorld
from iftgym.worlds.window import FrameWindow

# rgb_array colours: padding (also the background) grey, <bos> white, <eos> black; characters get saturated hues
SPECIAL_COLOURS = {PAD: (110, 110, 110), BOS: (255, 255, 255), EOS: (0, 0, 0)}
GRID_COLOUR = (60, 60, 60)
PROMPT_MARK, ANSWER_MARK = (200, 200, 200), (230, 80, 60)
GOLDEN = 0.618033988749895  # hue step between token ids: neighbouring characters get far-apart hues
WINDOW_TITLE = "iftgym/TokenGen-v0"


def token_colours(n_ids: int) -> np.ndarray:
    """``(n_ids, 3)`` uint8: the colour of each token id in the frames of :meth:`TokenGenEnv.render_rgb`."""
    hues = ((i - len(SPECIAL_TOKENS)) * GOLDEN % 1.0 for i in range(n_ids))
    colours = np.rint(np.array([colorsys.hsv_to_rgb(hue, 0.65, 0.92) for hue in hues]) * 255).astype(np.uint8)
    for token, colour in SPECIAL_COLOURS.items():
        colours[token] = colour
    return colours.reshape(n_ids, 3)


class TokenGenEnv(gym.Env):
    """Answer prompts of a token task one token at a time.

    Args:
        task: a task name (``"addition"``, ``"sort"``, ``"frozen-lake"``, ``"jsonl"``) or a :class:`Task`.
        split: ``"train"`` or ``"test"``: the prompts an episode draws from (uniformly, with the env's RNG).
        reward: ``"end"`` (the task's reward on the last token) or ``"token"`` (per-token, see :class:`TokenWorld`).
        render_mode: ``"ansi"`` (the prompt and the answer so far as text), ``"rgb_array"`` (the same as an
            image, see :meth:`render_rgb`) or ``"human"`` (that image in a matplotlib window, updated on every reset
            and step; refused at construction without a display and an interactive backend, as Frozen Lake's).
        **task_kwargs: passed to the task's constructor (``digits=2``, ``path="data.jsonl"``...) when ``task`` is
            a name.
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}

    def __init__(
        self,
        task: str | Task = "addition",
        split: str = "train",
        reward: str = "end",
        render_mode: str | None = None,
        **task_kwargs: Any,
    ) -> None:
        if render_mode is not None:
            one_of("render_mode", render_mode, TokenGenEnv.metadata["render_modes"])
        problem = human_display_problem()
        if render_mode == "human" and problem is not None:  # refused now, not at the first reset
            raise ValueError(f"render_mode='human' is not supported: expected one of 'ansi', 'rgb_array' here, since "
                             f"'human' needs an interactive matplotlib backend (a display) and {problem}; use "
                             "render_mode='rgb_array' or 'ansi', or run where a display is available")  # fmt: skip
        modes = [mode for mode in TokenGenEnv.metadata["render_modes"] if mode != "human" or problem is None]
        self.metadata = {**TokenGenEnv.metadata, "render_modes": modes}  # what this env can use where it runs
        self._window = FrameWindow(WINDOW_TITLE, self.metadata["render_fps"])  # human mode's figure
        if isinstance(task, str):
            task = make_task(task, **task_kwargs)
        elif not isinstance(task, Task):
            raise ValueError(f"task={task!r} is {type(task).__name__}: expected a task name "
                             f"({', '.join(TASKS.names())}) or an iftgym Task")  # fmt: skip
        elif task_kwargs:  # they would be silently ignored
            raise ValueError(f"task options {', '.join(task_kwargs)} only apply to a task given by name: expected "
                             f"them in the constructor of the {type(task).__name__} passed as task")  # fmt: skip
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
        self.colours = token_colours(self.world.n_ids)

    def _obs(self) -> dict[str, Any]:
        sequence = (*self.state[0], *self.state[1])
        tokens = np.full(self.world.block_size, PAD, dtype=np.int64)
        tokens[: len(sequence)] = sequence
        return {"tokens": tokens, "length": len(sequence)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict]:
        """Start on a random prompt of the split, or on ``options={"index": i}``."""
        if options is not None and (not isinstance(options, dict) or set(options) - {"index"}):
            raise ValueError(f"options={options!r} is not supported: expected None or a dict with the one key 'index'")
        if seed is not None:  # Gymnasium's own check raises its own error class, not ValueError
            at_least("seed", seed, 0, note="or None")
        super().reset(seed=seed)
        index = (options or {}).get("index", int(self.np_random.integers(len(self.examples))))
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.examples):
            raise ValueError(f"index={index!r} is out of range: expected an integer 0 <= index < {len(self.examples)} "
                             f"(the split has {len(self.examples)} prompts)")  # fmt: skip
        prompt = self.examples[index].prompt
        self.state = (self.world.prompt_ids(prompt), ())
        if self.render_mode == "human":
            self.render()
        return self._obs(), {"prompt": prompt}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict]:
        if isinstance(action, bool) or not self.action_space.contains(action):
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
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, terminated, ended and not terminated, info

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.render_rgb()
        if self.render_mode == "human":
            self._show(self.render_rgb())
        if self.render_mode != "ansi":
            return None
        prompt, answer = self.state
        return f"{self.world.tokenizer.decode(prompt[1:])}{self.world.tokenizer.decode(answer)}\n"

    def _show(self, frame: np.ndarray) -> None:
        """Draw ``frame`` in this env's window, sized to the sequence's strip."""
        width = min(12.0, max(3.0, frame.shape[1] / 40))
        self._window.show(frame, (width, max(1.0, width * frame.shape[0] / frame.shape[1] + 0.4)))

    def close(self) -> None:
        self._window.close()
        super().close()

    def render_rgb(self, cell: int = 16) -> np.ndarray:
        """The observation's sequence as a ``(cell + cell // 4, block_size * cell, 3)`` uint8 image.

        One ``cell`` x ``cell`` block per position of the sequence, left to right: ``<bos>``, the prompt, the answer
        so far, then padding up to the longest sequence, so every frame of an env has the same size. Each character
        has its own colour (:func:`token_colours`: hues a golden-ratio turn apart), ``<bos>`` is white, ``<eos>``
        black, padding grey, with a dark line between blocks. A band below marks the prompt (light grey) and the
        answer (red). ``cell`` is 4..64 pixels.
        """
        at_least("cell", cell, 4, high=64)
        obs = self._obs()
        prompt_end, end = len(self.state[0]) * cell, obs["length"] * cell
        tokens = np.repeat(self.colours[obs["tokens"]], cell, axis=0)  # (block_size * cell, 3): one row of pixels
        tokens[::cell] = GRID_COLOUR
        band = np.repeat(np.array([SPECIAL_COLOURS[PAD]], np.uint8), len(tokens), axis=0)
        band[:prompt_end], band[prompt_end:end] = PROMPT_MARK, ANSWER_MARK
        return np.concatenate([np.repeat(tokens[None], cell, axis=0), np.repeat(band[None], cell // 4, axis=0)])
