"""``iftgym explore bias`` in a real browser, driven as a person would: the map editor and SFT's optimism along the
demonstration, with only the settings that change it; a click on a cell of the demonstration's route makes it a
hole, SFT retrains and the picture follows the new route; an invalid map keeps the last good picture; the
training-step slider redraws; the Monte Carlo check lists one interval per step of the demonstration. The page shows
no traceback and the console no error. The tests run in order on one page (small settings: 2 seeds, 20 steps)."""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from iftgym.interactive.pages import PAGE_SETTINGS
from iftgym.worlds.frozen_lake.maps import load_map
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

HOLE = "rgba(31, 42, 68, 1)"  # the explorer's hole colour, #1f2a44, as selenium reads a colour
HEADING = "SFT's optimism along the demonstration"
PROBLEM = "//span[contains(@style, '#b00020')]"  # the editor's message about an invalid map
INTERVALS = "//div[contains(@class,'widget-html-content')][.//table][contains(., 'Monte Carlo')]"


@pytest.fixture(scope="module")
def steps(small) -> int:
    """The steps SFT trains: the small settings', or the page's default with ``--screenshots``."""
    return int(small[3]) if small else PAGE_SETTINGS["bias"]["steps"][2]


@pytest.fixture(scope="module")
def settings(small, steps) -> str:
    return f"{small[1] if small else PAGE_SETTINGS['bias']['seeds'][2]} seeds, {steps} steps, sft"


@pytest.fixture(scope="module")
def bias(serve, page, timings, small, settings):
    """The bias page, loaded (its picture shown); the seconds from the server's start to then are recorded."""
    server = serve("bias", *small)
    page.open(server)
    page.wait_for("the bias picture", lambda: len(page.images()) == 1 and page.loaded(page.images()[0]))
    timings[f"first page ready after the server starts (bias; {settings})"] = time.monotonic() - server.started
    timings[f"  of which until the server listens (bias; {settings})"] = server.listening - server.started
    return page


def labels(page) -> list[str]:
    """The map cells' labels as the browser shows them (a blank label is "")."""
    texts = page.driver.execute_script(
        "return Array.from(document.querySelectorAll('.widget-gridbox button'), b => b.innerText)"
    )
    return [text.replace("\u00a0", " ").strip() for text in texts]


def expected(rows: list[str]) -> list[str]:
    return [tile if tile in "SG" else "" for row in rows for tile in row]


def cell(page, index: int) -> WebElement:
    return page.driver.find_elements(By.CSS_SELECTOR, ".widget-gridbox button")[index]


def picture(page) -> str:
    """The bias picture's data."""
    return page.images()[0].get_attribute("src")


def texts(page, xpath: str) -> str:
    """The text of the elements at ``xpath``, joined."""
    return "".join(element.text for element in page.driver.find_elements(By.XPATH, xpath))


def body(page) -> str:
    return page.driver.find_element(By.TAG_NAME, "body").text


def demonstration_steps(rows: list[str]) -> int:
    """The actions of the optimal demonstration on ``rows``: the steps the bias explorer plots and checks."""
    return len(FrozenLakeMDP.from_map(rows, False, 1 / 3, 0.95).optimal_demonstration().actions)


def readout(page) -> str:
    """The training-step slider's readout."""
    return page.widget("widget-slider", "training step").find_element(By.CSS_SELECTOR, ".widget-readout").text


def test_the_page_shows_the_map_the_heading_and_the_picture(bias, steps) -> None:
    assert labels(bias) == expected(list(load_map("paper")))
    text = body(bias)
    assert HEADING in text and "trained 1 rule" in text
    assert readout(bias) == str(steps)  # the last kept step
    assert bias.error_output() == "" and bias.console_errors() == []
    bias.shoot("browser-bias-page", height=1000)


def test_only_the_settings_that_change_the_picture_show(bias) -> None:
    shown = {label.text for label in bias.driver.find_elements(By.CSS_SELECTOR, ".widget-label") if label.text}
    assert {"map", "IFT lambda", "learning rate", "steps", "seeds", "policy"} <= shown, shown
    assert not shown & {"rules", "IFT gamma", "DPO/ORPO beta"}, shown  # the page trains SFT alone


def test_a_hole_on_the_route_retrains_and_redraws_along_the_new_route(bias) -> None:
    before = picture(bias)
    cell(bias, 6).click()  # the cell below the start, on the demonstration's route: F -> H
    bias.wait_for("cell 6 to be a hole", lambda: cell(bias, 6).value_of_css_property("background-color") == HOLE)
    bias.wait_for("the new picture", lambda: picture(bias) != before and bias.loaded(bias.images()[0]))
    assert labels(bias)[6] == "" and bias.error_output() == "" and bias.console_errors() == []


def test_an_invalid_map_keeps_the_last_good_picture(bias) -> None:
    before = picture(bias)
    cell(bias, 0).click()  # S -> G: two goals, no start
    bias.wait_for("cell 0 to read G", lambda: labels(bias)[0] == "G")
    problem = bias.wait_for("the map's problem", lambda: texts(bias, PROBLEM))
    assert "start" in problem and picture(bias) == before
    for _ in range(3):  # G -> F -> H -> S: valid again, the same map as before
        cell(bias, 0).click()
    bias.wait_for("cell 0 to read S", lambda: labels(bias)[0] == "S")
    bias.wait_for("the problem gone", lambda: not bias.driver.find_elements(By.XPATH, PROBLEM))
    assert bias.error_output() == "" and bias.console_errors() == []


def test_the_training_step_slider_redraws(bias) -> None:
    before = picture(bias)
    slider = bias.widget("widget-slider", "training step")
    track = slider.find_element(By.CSS_SELECTOR, ".noUi-target").size["width"]
    ActionChains(bias.driver).click_and_hold(slider.find_element(By.CSS_SELECTOR, ".noUi-handle")).move_by_offset(
        -track - 5, 0).release().perform()  # from the last step to the first  # fmt: skip
    bias.wait_for("the readout at step 0", lambda: readout(bias) == "0")
    bias.wait_for("the picture at step 0", lambda: picture(bias) != before)
    assert bias.console_errors() == []


def test_the_monte_carlo_check_lists_one_interval_per_step_of_the_demonstration(bias) -> None:
    bias.button("Monte Carlo check").click()
    text = bias.wait_for("the intervals", lambda: texts(bias, INTERVALS))
    assert "Monte Carlo, 2000 rollouts" in text and "exact inside the interval at" in text
    rows = list(load_map("paper"))
    rows[1] = "H" + rows[1][1:]  # the hole the earlier test made
    table = bias.driver.find_elements(By.XPATH, "//table[.//th[normalize-space()='95% interval']]//tr")
    assert len(table) == 1 + demonstration_steps(rows) == 1 + 14  # the header and the route along the top and right
    bias.shoot("browser-bias-check", bias.button("Monte Carlo check").find_element(
        By.XPATH, "ancestor::div[contains(@class,'widget-vbox')][1]"))  # fmt: skip
    assert bias.error_output() == "" and bias.console_errors() == []
