"""``iftgym explore tiny-lm`` in a real browser: a typed prompt gets every rule's answer and, for a prompt of the
task, the target's strips, drawn at the screen's pixel density; a prompt outside the task hides the strips (no
broken-image icon); continue and new seed train again and the page says so (the step, the score line, new strips);
the console stays free of errors. Small settings: 1 seed, 20 steps."""

from __future__ import annotations

import re
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from iftgym.interactive.pages import PAGE_SETTINGS


@pytest.fixture(scope="module")
def steps(small) -> int:
    """The steps of a fresh training on the page: 20, or the page's default with ``--screenshots``."""
    return 20 if small else PAGE_SETTINGS["tiny-lm"]["steps"][2]


@pytest.fixture(scope="module")
def settings(small, steps) -> str:
    return f"1 seed, {steps} steps, sft and ift" if small else f"2 seeds, {steps} steps, sft and ift"


@pytest.fixture(scope="module")
def lm(serve, page, timings, small, steps, settings):
    server = serve("tiny-lm", *(["--seeds", "1", "--steps", str(steps)] if small else []))
    page.open(server)
    page.wait_for("both strips", lambda: len(page.images()) == 2 and all(map(page.loaded, page.images())))
    timings[f"first page ready after the server starts (tiny-lm; {settings})"] = time.monotonic() - server.started
    timings[f"  of which until the server listens (tiny-lm; {settings})"] = server.listening - server.started
    return page


def answers(page) -> str:
    return next((element.text for element in page.driver.find_elements(
        By.XPATH, "//div[contains(@class,'widget-html-content')][contains(., 'sft:')]")), "")  # fmt: skip


def type_prompt(page, text: str) -> None:
    box = page.widget("widget-text", "prompt").find_element(By.TAG_NAME, "input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text, Keys.ENTER)


def html_text(page, start: str) -> str:
    """The text of the HTML widget whose text starts with ``start``, or ""."""
    xpath = f"//div[contains(@class,'widget-html-content')][starts-with(normalize-space(), '{start}')]"
    return next((element.text for element in page.driver.find_elements(By.XPATH, xpath)), "")


def prompts(page) -> list[str]:
    """The prompt box's suggestions: the task's prompts."""
    return page.driver.execute_script("return Array.from(document.querySelectorAll('datalist option'), o => o.value)")


def sources(page) -> list[str]:
    return [image.get_attribute("src") for image in page.images()]


def new_strips(page, before: list[str]) -> bool:
    """Whether both strips show, each a picture other than the one in ``before``."""
    shown = sources(page)
    return len(shown) == 2 and all(a != b for a, b in zip(shown, before)) and all(map(page.loaded, page.images()))


def test_a_typed_prompt_of_the_task_gets_every_rule_s_answer_and_sharp_strips(lm, timings, settings) -> None:
    before = sources(lm)
    prompt = prompts(lm)[3]  # not the first, shown at start
    a, b = map(int, re.fullmatch(r"(\d+)\+(\d+)=", prompt).groups())
    type_prompt(lm, prompt)
    typed = time.monotonic()
    target = str(a + b)[::-1]  # the addition task writes answers least-significant digit first
    text = lm.wait_for("the answers", lambda: f"target: {target}" in answers(lm) and answers(lm))
    lm.wait_for("new strips", lambda: new_strips(lm, before))
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


def show_a_prompt_of_the_task(page) -> list[str]:
    """Type a prompt of the task, wait for its answers and strips, and return the strips' sources."""
    prompt = prompts(page)[1]
    a, b = map(int, re.fullmatch(r"(\d+)\+(\d+)=", prompt).groups())
    target = f"{a + b:03d}"[::-1]  # two-digit sums: three digits, least-significant first
    type_prompt(page, prompt)
    page.wait_for("the prompt's answers", lambda: f"target: {target}" in answers(page))
    return page.wait_for("its strips", lambda: new_strips(page, []) and sources(page))


def test_continue_trains_on_and_the_page_shows_the_step_the_score_and_new_strips(lm, timings, settings) -> None:
    before = show_a_prompt_of_the_task(lm)
    steps = int(re.search(r"step (\d+)", html_text(lm, "seed 0,")).group(1))  # the steps trained so far
    more = lm.widget("widget-text", "+ steps").find_element(By.TAG_NAME, "input")
    more.send_keys(Keys.CONTROL, "a")
    more.send_keys("7", Keys.TAB)
    button = lm.button("continue")
    button.click()
    pressed = time.monotonic()
    lm.wait_for("the new step", lambda: html_text(lm, f"seed 0, step {steps + 7}"))
    score = lm.wait_for("the new score line", lambda: html_text(lm, f"held-out exact match after {steps + 7} steps"))
    lm.wait_for("new strips", lambda: new_strips(lm, before))
    timings[f"continue +7 steps -> new strips ({settings})"] = time.monotonic() - pressed
    scores = r"sft \d\.\d\d \[[\d. ]+\], ift \d\.\d\d \[[\d. ]+\]"
    assert re.fullmatch(rf"held-out exact match after {steps + 7} steps \(greedy, 200 prompts; mean of \d models?, "
                        rf"each in brackets\): {scores}", score), score  # fmt: skip
    assert "trained 7 steps more" in html_text(lm, "seed 0,") and button.is_enabled()
    assert lm.console_errors() == []


def test_new_seed_trains_new_models_and_the_page_shows_them(lm, steps) -> None:
    before = show_a_prompt_of_the_task(lm)
    lm.button("new seed").click()
    lm.wait_for("seed 1's models", lambda: html_text(lm, f"seed 1, step {steps}"))
    lm.wait_for("their score line", lambda: html_text(lm, f"held-out exact match after {steps} steps"))
    lm.wait_for("their strips", lambda: new_strips(lm, before))
    assert lm.console_errors() == []
