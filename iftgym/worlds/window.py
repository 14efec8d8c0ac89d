"""The window of ``render_mode="human"``: one matplotlib figure per env, its image updated in place frame by frame
(reopened if the user closed it), as Gymnasium's own envs keep one pygame window."""

from __future__ import annotations

from typing import Any

import numpy as np


class FrameWindow:
    """A figure titled ``title`` that shows each frame for ``1 / fps`` seconds; ``figure`` and ``image`` are
    ``None`` until the first frame."""

    def __init__(self, title: str, fps: float) -> None:
        self.title, self.fps = title, fps
        self.figure: Any = None
        self.image: Any = None

    def show(self, frame: np.ndarray, size: tuple[float, float]) -> None:
        """Draw ``frame`` (a new figure of ``size`` inches if there is none open)."""
        import matplotlib.pyplot as plt  # only human rendering needs pyplot and its GUI event loop

        if self.figure is None or not plt.fignum_exists(self.figure.number):
            self.figure, axes = plt.subplots(figsize=size)
            axes.set_axis_off()
            self.figure.tight_layout(pad=0.2)
            if self.figure.canvas.manager is not None:
                self.figure.canvas.manager.set_window_title(self.title)
            self.image = axes.imshow(frame)
        else:
            plt.figure(self.figure.number)  # plt.pause shows the active figure: make it this env's
            self.image.set_data(frame)
        plt.pause(1 / self.fps)

    def close(self) -> None:
        """Close the figure, if one is open (closing twice is allowed)."""
        if self.figure is not None:
            import matplotlib.pyplot as plt

            plt.close(self.figure)
            self.figure = self.image = None
