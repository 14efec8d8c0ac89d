"""What the two worlds' env tests share: human rendering drawn with Agg, its pauses recorded, and the check that
every frame goes to one window, updated in place."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


@pytest.fixture
def window(monkeypatch) -> list[float]:
    """Human mode allowed (the display check passes), drawn with Agg, and ``plt.pause`` recorded, not waited."""
    import matplotlib.pyplot as plt

    from iftgym.worlds.frozen_lake import env as lake_env
    from iftgym.worlds.tokens import env as token_env

    for module in (lake_env, token_env):
        monkeypatch.setattr(module, "human_display_problem", lambda: None)
    pauses: list[float] = []
    monkeypatch.setattr(plt, "pause", pauses.append)
    plt.close("all")
    yield pauses
    plt.close("all")


@pytest.fixture
def draws_in_one_window(window) -> Callable:
    """``check(env, action)``: reset and a step draw in one figure, updated in place, each frame shown for one
    frame time; closing the env (twice) closes it."""
    import matplotlib.pyplot as plt

    def check(env, action: int) -> None:
        assert env.unwrapped.metadata["render_modes"] == ["ansi", "rgb_array", "human"]
        env.reset(seed=0)  # Gymnasium's convention: human mode draws on reset and on every step
        shown = env.unwrapped._window
        figure, image = shown.figure, shown.image
        assert plt.get_fignums() == [figure.number] and window == [1 / env.unwrapped.metadata["render_fps"]]
        env.step(action)
        assert env.render() is None and len(window) == 3
        assert plt.get_fignums() == [figure.number] and shown.image is image  # updated in place
        np.testing.assert_array_equal(image.get_array(), env.unwrapped.render_rgb())
        plt.close(figure)  # the user closes the window: the next frame opens a new one
        env.step(action)
        assert len(plt.get_fignums()) == 1 and shown.figure is not figure
        env.close()
        env.close()  # closing twice is allowed, as Gymnasium asks
        assert plt.get_fignums() == []

    return check
