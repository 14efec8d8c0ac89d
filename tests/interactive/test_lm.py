"""The tiny-LM explorer: trains each rule, answers typed prompts, draws strips for the task's prompts."""

from __future__ import annotations

import pytest

from iftgym.interactive import TinyLMExplorer
from iftgym.interactive.html import png_size
from iftgym.interactive.lm import DENSITY


def test_prompts_are_answered_by_every_rule_with_strips_for_the_task_s_own() -> None:
    explorer = TinyLMExplorer(steps=5)
    assert set(explorer.policies) == {"sft", "ift"} and "trained 2 rules" in explorer.status.value
    prompt = explorer.world.task.test[1].prompt
    explorer.prompt.value = prompt
    assert f"target: {explorer.targets[prompt]}" in explorer.answers.value
    assert all(picture.value[:4] == b"\x89PNG" for picture in explorer.strips.values())
    shown = {algo: picture.value for algo, picture in explorer.strips.items()}
    explorer.prompt.value = "12+"  # not a prompt of the task: answers, no strip (hidden, not an empty image)
    assert "no target strip" in explorer.answers.value
    assert all(picture.layout.display == "none" for picture in explorer.strips.values())
    assert {algo: picture.value for algo, picture in explorer.strips.items()} == shown  # never b"": a broken image
    explorer.prompt.value = prompt
    assert all(picture.layout.display is None for picture in explorer.strips.values())
    explorer.prompt.value = "hello"
    assert "is not in the vocabulary" in explorer.answers.value


def test_bad_settings_are_refused_before_training() -> None:
    for settings, message in (({"seeds": 0}, "seeds=0 is out of range"), ({"steps": 0}, "steps=0 is out of range"),
                              ({"algos": ("magic",)}, "unknown rule 'magic'")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            TinyLMExplorer(**settings, train_now=False)


def test_the_strips_use_the_lambda_of_the_ift_that_trained() -> None:
    explorer = TinyLMExplorer(algos=("ift(lam=0)", "sft"), steps=2)
    example = explorer.world.task.test[0]
    strip = explorer.strip("ift(lam=0)", example.prompt, example.completion)
    assert strip["lam"] == 0 and strip["ift"] == strip["teacher_forced"]  # lambda 0: IFT's estimate is SFT's
    assert explorer.strip("sft", example.prompt, example.completion)["lam"] == 0.2  # no IFT trained: the default
    assert explorer.runs["ift(lam=0)"].stages[0].rule.config.lam == 0


def test_the_strips_are_drawn_at_the_screen_s_density_with_the_title_clear_of_the_colour_bar_label() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    explorer = TinyLMExplorer(steps=2, seeds=1)
    example = explorer.world.task.test[0]
    png = explorer.strip_png("sft", example.prompt, example.completion)
    picture = explorer.strips["sft"]
    explorer.prompt.value = example.prompt
    assert picture.value == png and int(picture.width) * DENSITY == png_size(png)[0]  # 2 pixels per CSS pixel
    fig = explorer.strip_figure("sft", example.prompt, example.completion)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    title = fig.get_suptitle() and fig._suptitle.get_window_extent(renderer)
    label = fig.axes[-1].yaxis.label.get_window_extent(renderer)
    assert label.y1 < title.y0 and label.y0 >= 0 and label.y1 <= fig.bbox.y1  # below the title, inside the figure
