"""The tiny-LM explorer: trains each rule, answers typed prompts, draws strips for the task's prompts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from iftgym.interactive import TinyLMExplorer
from iftgym.interactive.html import png_size
from iftgym.interactive.lm import DENSITY


def test_prompts_are_answered_by_every_rule_with_strips_for_the_task_s_own() -> None:
    explorer = TinyLMExplorer(steps=5)
    assert set(explorer.policies) == {"sft", "ift"} and "2 rules x 2 models trained" in explorer.status.value
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


def weights(explorer: TinyLMExplorer) -> dict[str, list[torch.Tensor]]:
    return {algo: [w.detach().clone() for w in policy.parameters()] for algo, policy in explorer.policies.items()}


def test_the_score_line_is_each_rule_s_held_out_greedy_exact_match() -> None:
    explorer = TinyLMExplorer(steps=150)  # enough steps for a few right answers
    measured = {algo: explorer.world.scores(policy, ("greedy_test",))["greedy_test"].tolist()
                for algo, policy in explorer.policies.items()}  # fmt: skip
    assert {algo: values.tolist() for algo, values in explorer.accuracy.items()} == measured
    assert any(value > 0 for values in measured.values() for value in values)
    scores = ", ".join(f"{algo} {(a + b) / 2:.2f} [{a:.2f} {b:.2f}]" for algo, (a, b) in measured.items())
    assert explorer.score_line.value == ("held-out exact match after 150 steps (greedy, 200 prompts; mean of 2 "
                                         f"models, each in brackets): {scores}")  # fmt: skip


def test_continue_trains_the_current_models_on_with_their_optimiser_s_state() -> None:
    explorer = TinyLMExplorer(steps=4)
    policies, before, strips = explorer.policies, weights(explorer), {a: p.value for a, p in explorer.strips.items()}
    explorer.more.value = 3
    explorer.continue_button.click()
    assert explorer.step == 7 and explorer.seed == 0 and "<b>seed 0, step 7</b>" in explorer.status.value
    assert "trained 3 steps more" in explorer.status.value and "after 7 steps" in explorer.score_line.value
    assert all(explorer.policies[algo].seeds == policies[algo].seeds for algo in policies)  # the same models
    for algo, tensors in weights(explorer).items():
        assert not all(torch.equal(a, b) for a, b in zip(tensors, before[algo])), algo
        steps = {float(state["step"]) for state in explorer.optimizers[algo]["state"].values()}
        assert steps == {7}, algo  # Adam's moments carried over: 4 steps, then 3 more
    assert [stage.steps for stage in explorer.runs["ift"].stages] == [4, 3]
    assert {a: p.value for a, p in explorer.strips.items()} != strips  # redrawn for the models as they are now
    assert not explorer.continue_button.disabled and explorer.progress.layout.display == "none"
    assert explorer.progress.value == explorer.progress.max == 6  # two rules, 3 steps each


def test_a_recipe_goes_on_with_its_last_rule() -> None:
    explorer = TinyLMExplorer(algos=("sft+ift(lam=0)",), steps=4, seeds=1)
    explorer.train_on(2)
    example = explorer.world.task.test[0]
    names = [stage.rule.name for stage in explorer.runs["sft+ift(lam=0)"].stages]
    assert names == ["sft", "ift(lam=0)", "ift(lam=0)"]
    assert explorer.strip("sft+ift(lam=0)", example.prompt, example.completion)["lam"] == 0


def test_new_seed_trains_new_models_from_scratch() -> None:
    explorer = TinyLMExplorer(steps=4)
    explorer.train_on(2)
    before = weights(explorer)
    example = explorer.world.task.test[0]
    strip = explorer.strip("sft", example.prompt, example.completion)
    explorer.new_seed_button.click()
    assert explorer.seed == 1 and explorer.step == 4 and "<b>seed 1, step 4</b>" in explorer.status.value
    assert all(policy.seeds == [2, 3] for policy in explorer.policies.values())  # seed 0's models were 0 and 1
    assert all(not torch.equal(a, b) for a, b in zip(weights(explorer)["sft"], before["sft"]))
    assert explorer.strip("sft", example.prompt, example.completion)["teacher_forced"] != strip["teacher_forced"]
    assert explorer.answers.value.startswith("<b>sft</b>") and "after 4 steps" in explorer.score_line.value
    assert [stage.steps for stage in explorer.runs["sft"].stages] == [4]


def test_continue_before_any_training_is_refused() -> None:
    explorer = TinyLMExplorer(train_now=False)
    with pytest.raises(RuntimeError, match="has not trained yet"):
        explorer.train_on(5)
    with pytest.raises(ValueError, match="steps=0 is out of range"):
        TinyLMExplorer(steps=2, seeds=1).train_on(0)


def test_why_shows_each_rule_s_next_step_on_the_prompt_with_its_live_optimiser() -> None:
    explorer = TinyLMExplorer(steps=4)
    assert explorer.updates.layout.display == "none"  # off by default: nothing drawn
    example = explorer.world.task.test[0]
    explorer.prompt.value = example.prompt
    explorer.why.value = True
    assert explorer.updates.layout.display is None and explorer.updates.value[:8] == b"\x89PNG\r\n\x1a\n"
    update = explorer.update("sft", example.prompt, example.completion)
    rule, optimizer, step = explorer.next_steps["sft"]
    assert update.optimizer == type(optimizer).__name__ and step == 4 and rule.name == "sft"
    # SFT on this one answer: every position's loss weight is 1 / its answer's tokens, for every model
    assert len(update.targets) == len(example.completion) + 1  # its digits and <eos>
    np.testing.assert_allclose(update.weights, 1 / len(update.targets), rtol=1e-5)
    before = weights(explorer)
    explorer.update("ift", example.prompt, example.completion)
    after = weights(explorer)
    assert all(torch.equal(a, b) for algo in before for a, b in zip(before[algo], after[algo]))  # taken on copies
    explorer.prompt.value = "not a prompt of the task"  # no target: no strip of a step either
    shown = explorer.updates.layout.display
    assert shown is None or shown == "none"


def test_a_training_that_fails_leaves_the_explorer_as_it_was(monkeypatch) -> None:
    import iftgym.interactive.lm as module

    explorer = TinyLMExplorer(steps=3)
    runs, before, optimizers = dict(explorer.runs), weights(explorer), explorer.optimizers
    moments = copy.deepcopy(explorer.optimizers["sft"]["state"])  # sft trains on before ift fails
    status = explorer.status.value
    train = module.run_algorithm

    def fails_second(algo, *args, **kwargs):
        if algo == "ift":
            raise RuntimeError("stopped")
        return train(algo, *args, **kwargs)

    monkeypatch.setattr(module, "run_algorithm", fails_second)
    for press in (lambda: explorer.train_on(2), explorer.new_seed):
        with pytest.raises(RuntimeError, match="stopped"):
            press()
        assert explorer.runs == runs and explorer.step == 3 and explorer.seed == 0
        assert explorer.optimizers is optimizers and explorer.status.value.startswith(status)
        for index, state in explorer.optimizers["sft"]["state"].items():  # the kept moments were not trained on
            assert all(torch.equal(value, moments[index][key]) for key, value in state.items())
        assert "training stopped (RuntimeError: stopped); the models are as they were" in explorer.status.value
        after = weights(explorer)
        assert all(torch.equal(a, b) for algo in before for a, b in zip(before[algo], after[algo]))  # not trained on
        assert not explorer.continue_button.disabled
