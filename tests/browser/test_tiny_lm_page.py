"""``iftgym explore tiny-lm`` in a real browser: a typed prompt gets every rule's answer and, for a prompt of the
task, the target's strips, drawn at the screen's pixel density; a prompt outside the task hides the strips (no
broken-image icon); the console stays free of errors. Small settings: 1 seed, 20 steps."""

from __future__ import annotations

import re
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys


@pytest.fixture(scope="module")
def settings(small) -> str:
    return "1 seed, 20 steps, sft and ift" if small else "2 seeds, 600 steps, sft and ift"


@pytest.fixture(scope="module")
def lm(serve, page, timings, small, settings):
    server = serve("tiny-lm", *(["--seeds", "1", "--steps", "20"] if small else []))
    page.open(server)
    page.wait_for("both strips", lambda: len(page.images()) == 2 and all(map(page.loaded, page.images())))
    timings[f"first page ready after the server listens (tiny-lm; {settings})"] = time.monotonic() - server.listening
    return page


def answers(page) -> str:
    return next((element.text for element in page.driver.find_elements(
        By.XPATH, "//div[contains(@class,'widget-html-content')][contains(., 'sft:')]")), "")  # fmt: skip


def type_prompt(page, text: str) -> None:
    box = page.widget("widget-text", "prompt").find_element(By.TAG_NAME, "input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text, Keys.ENTER)


def test_a_typed_prompt_of_the_task_gets_every_rule_s_answer_and_sharp_strips(lm, timings, settings) -> None:
    options = lm.driver.execute_script("return Array.from(document.querySelectorAll('datalist option'), o => o.value)")
    before = [image.get_attribute("src") for image in lm.images()]
    prompt = options[3]  # not the first, shown at start
    a, b = map(int, re.fullmatch(r"(\d+)\+(\d+)=", prompt).groups())
    type_prompt(lm, prompt)
    typed = time.monotonic()
    target = str(a + b)[::-1]  # the addition task writes answers least-significant digit first
    text = lm.wait_for("the answers", lambda: f"target: {target}" in answers(lm) and answers(lm))
    lm.wait_for("new strips", lambda: all(a != b for a, b in zip((i.get_attribute("src") for i in lm.images()),
                                                                 before)))  # fmt: skip
    timings[f"typed prompt -> answers and strips ({settings})"] = time.monotonic() - typed
    lines = text.split("\n")
    assert [line.split(":")[0] for line in lines] == ["sft", "ift", "target"]
    assert all(re.fullmatch(r"(sft|ift): \S*", line) for line in lines[:2]), lines
    for image in lm.images():
        assert lm.loaded(image)
        natural, shown = lm.driver.execute_script("return [arguments[0].naturalWidth, arguments[0].width]", image)
        assert abs(natural - 2 * shown) <= 1, (natural, shown)  # two pixels per CSS pixel: sharp at density 2
    lm.shoot("browser-tiny-lm", height=900)
    assert lm.console_errors() == []


def test_a_prompt_outside_the_task_hides_the_strips(lm) -> None:
    type_prompt(lm, "12+")
    lm.wait_for("the note", lambda: "not a prompt of the task" in lm.driver.find_element(By.TAG_NAME, "body").text)
    lm.wait_for("the strips hidden", lambda: lm.images() == [])
    every = lm.driver.find_elements(By.CSS_SELECTOR, "img.widget-image")
    assert not [image for image in every if image.is_displayed() and not lm.loaded(image)]  # no broken image
    type_prompt(lm, "hello")
    lm.wait_for("the vocabulary message", lambda: "is not in the vocabulary" in lm.driver.find_element(
        By.TAG_NAME, "body").text)  # fmt: skip
    assert lm.console_errors() == []
