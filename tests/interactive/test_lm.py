"""The tiny-LM explorer: trains each rule, answers typed prompts, draws strips for the task's prompts."""

from __future__ import annotations

import pytest

from iftgym.interactive import TinyLMExplorer


def test_prompts_are_answered_by_every_rule_with_strips_for_the_task_s_own() -> None:
    explorer = TinyLMExplorer(steps=5)
    assert set(explorer.policies) == {"sft", "ift"} and "trained 2 rules" in explorer.status.value
    prompt = explorer.world.task.test[1].prompt
    explorer.prompt.value = prompt
    assert f"target: {explorer.targets[prompt]}" in explorer.answers.value
    assert all(picture.value[:4] == b"\x89PNG" for picture in explorer.strips.values())
    explorer.prompt.value = "12+"  # not a prompt of the task: answers, no strip
    assert "no target strip" in explorer.answers.value
    assert all(picture.value == b"" for picture in explorer.strips.values())
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
