"""The pages ``iftgym explore`` serves: each explorer laid out alone, built from a few checked settings.

This module's names and limits load without ipywidgets or torch (the command line checks its options with them
before it starts a server); :func:`page` imports the explorers."""

from __future__ import annotations

from typing import Any

from iftgym.interactive.limits import LIMITS

PAGES = {
    "frozen-lake": "the Frozen Lake explorer: map editor, every rule retrained live, episode player, estimator bias",
    "tiny-lm": "the tiny-LM explorer: tiny GPTs trained on addition, each rule's answer to a typed prompt",
    "bias": "the estimator-bias explorer: SFT's optimism along the demonstration of an editable map",
}
# the explorers' settings a page takes, with their ranges and defaults (the Frozen Lake explorer's sliders' ranges;
# the tiny-LM bounds keep a page's training to minutes, and its defaults are the explorer's, lm.STEPS and lm.SEEDS:
# about 40 s of training on one core that take both rules to most held-out sums right)
PAGE_SETTINGS = {
    "frozen-lake": {"seeds": (*LIMITS["seeds"], 20), "steps": (*LIMITS["steps"], 300)},
    "bias": {"seeds": (*LIMITS["seeds"], 20), "steps": (*LIMITS["steps"], 300)},
    "tiny-lm": {"seeds": (1, 8, 2), "steps": (1, 5000, 1000)},
}
# the map editor's controls that change nothing the bias page shows (it trains SFT alone and draws its optimism, with
# IFT's estimate at the lambda slider's value): the rules to train, IFT's gamma, DPO's and ORPO's beta
BIAS_HIDDEN = ("algos", "gamma", "beta")


# what a Frozen Lake page's worker imports while this process imports the explorers: the module of its training
# task, and the part of torch a first optimiser step imports (about a second of a cold worker's first rule)
WARM_IMPORTS = ("iftgym.interactive.training", "torch._dynamo")
UPDATE_TITLE = "Why each rule moves each cell: update maps (open to record the chosen rule's)"


def check_page(name: str, **settings: int | None) -> dict[str, int]:
    """The page's settings with their defaults filled in; an unknown page or a value outside its range is refused
    with a ValueError naming the range."""
    if name not in PAGES:
        raise ValueError(f"unknown explorer {name!r}: expected one of {', '.join(PAGES)}")
    checked = {}
    for key, value in settings.items():
        low, high, default = PAGE_SETTINGS[name][key]
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{key}={value!r} is out of range for the {name} explorer: expected an integer "
                             f"{low} <= {key} <= {high}")  # fmt: skip
        checked[key] = value
    return checked


def page(name: str, seeds: int | None = None, steps: int | None = None, **options: Any) -> Any:
    """The widget of page ``name`` (one of :data:`PAGES`) with ``seeds`` and ``steps`` (checked; ``None``: the
    page's default); ``options`` go to the explorer. The explorers built are kept in :data:`built` by page name."""
    settings = check_page(name, seeds=seeds, steps=steps)
    if name != "tiny-lm" and "pool" not in options:  # its workers start while this process imports the explorers
        from iftgym.parallel import WorkerPool

        options["pool"] = WorkerPool(options.pop("workers", None))
        options["pool"].warm(block=False, imports=WARM_IMPORTS)
    import ipywidgets as widgets

    if name == "tiny-lm":
        from iftgym.interactive.lm import TinyLMExplorer

        lm = TinyLMExplorer(**settings, **options)
        built[name] = {"lm": lm}
        return lm.widget
    from iftgym.interactive.frozen_lake import BiasExplorer, EpisodePlayer, FrozenLakeExplorer, UpdateExplorer

    if name == "bias":
        explorer = FrozenLakeExplorer(**{"algos": ("sft",), **settings, **options})
        for control in BIAS_HIDDEN:
            explorer.controls[control].layout.display = "none"
        bias = BiasExplorer.following(explorer, "sft")
        built[name] = {"explorer": explorer, "bias": bias}
        return widgets.VBox([explorer.editor, _heading("SFT's optimism along the demonstration"), bias.widget])
    explorer = FrozenLakeExplorer(**settings, **options)
    player = EpisodePlayer.following(explorer, "ift")
    bias = BiasExplorer.following(explorer, "sft")
    update = UpdateExplorer(explorer, "ift", active=False)  # its fields are recorded once its panel is opened
    panel = widgets.Accordion(children=[update.widget], titles=(UPDATE_TITLE,), selected_index=None)
    panel.observe(lambda change: change["new"] is None or update.active or update.activate(), names="selected_index")
    built[name] = {"explorer": explorer, "player": player, "bias": bias, "update": update}
    return widgets.VBox([explorer.widget, _heading("Play an episode"), player.widget,
                         _heading("SFT's optimism along the demonstration"), bias.widget, panel])  # fmt: skip


built: dict[str, dict[str, Any]] = {}


def _heading(text: str) -> Any:
    import ipywidgets as widgets

    return widgets.HTML(f"<h3 style='margin:12px 0 4px'>{text}</h3>")
