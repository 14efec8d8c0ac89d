"""Save what the notebook explorers show, from a real run, as the README's pictures:
``python examples/explorer_figures.py docs/figures`` (the widgets themselves need a browser; these are the exact
images they display)."""

from __future__ import annotations

import sys
from pathlib import Path

from iftgym.interactive import BiasExplorer, EpisodePlayer, FrozenLakeExplorer, TinyLMExplorer


def main(out: Path) -> None:
    explorer = FrozenLakeExplorer()
    explorer.controls["step"].value = 100  # scrubbed back to step 100 of 300
    for name in ("preference", "values"):
        (out / f"explorer-{name}.png").write_bytes(explorer.images[name])
    player = EpisodePlayer(explorer.model, explorer.runs["ift"].at(300)[0])
    player.step.value = 3
    (out / "explorer-episode.png").write_bytes(player.picture.value)
    bias = BiasExplorer(explorer.model, explorer.runs["sft"])
    bias.step.value = 10
    (out / "explorer-bias.png").write_bytes(bias.picture.value)
    lm = TinyLMExplorer(steps=600)
    lm.prompt.value = lm.world.task.test[0].prompt
    (out / "explorer-lm-ift.png").write_bytes(lm.strips["ift"].value)
    print(lm.answers.value)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/figures"))
