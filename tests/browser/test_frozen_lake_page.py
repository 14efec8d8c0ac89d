"""``iftgym explore frozen-lake`` in a real browser, driven as a person would: click map cells, pick maps, drag a
slider, press play, run the Monte Carlo check; the page shows what it must (cell labels, new pictures, the table's
numbers) and the browser's console stays free of errors. The tests run in order on one page (small settings: 2
seeds, 20 steps, the five default rules)."""

from __future__ import annotations

import re
import time

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from iftgym.worlds.frozen_lake.maps import load_map, random_map

HOLE = "rgba(31, 42, 68, 1)"  # the explorer's hole colour, #1f2a44, as selenium reads a colour


@pytest.fixture(scope="module")
def settings(small) -> str:
    return f"{small[1]} seeds, {small[3]} steps, 5 rules" if small else "20 seeds, 300 steps, 5 rules"


@pytest.fixture(scope="module")
def lake(serve, page, timings, small, settings):
    """The Frozen Lake page, loaded (its six pictures shown); the seconds from the server's start to then are
    recorded."""
    server = serve("frozen-lake", *small)
    seconds = page.open(server)
    page.wait_for("the six pictures", lambda: len(page.images()) == 6 and all(map(page.loaded, page.images())))
    timings[f"first page ready after the server starts ({settings})"] = time.monotonic() - server.started
    timings[f"  of which until the server listens ({settings})"] = server.listening - server.started
    timings[f"  of which until the first picture ({settings})"] = seconds
    return page


def labels(page) -> list[str]:
    """The map cells' labels as the browser shows them (a blank label is "")."""
    texts = page.driver.execute_script(
        "return Array.from(document.querySelectorAll('.widget-gridbox button'), b => b.innerText)"
    )
    return [text.replace("\u00a0", " ").strip() for text in texts]


def expected(rows: tuple[str, ...]) -> list[str]:
    return [tile if tile in "SG" else "" for row in rows for tile in row]


def cell(page, index: int) -> WebElement:
    return page.driver.find_elements(By.CSS_SELECTOR, ".widget-gridbox button")[index]


def sources(page) -> list[str]:
    """The shown pictures' data, top to bottom: the explorer's four, the episode player's, the bias explorer's."""
    return [image.get_attribute("src") for image in page.images()]


def status(page) -> str:
    return page.driver.find_element(By.XPATH, "//div[contains(@class,'widget-html-content')][starts-with("
                                    "normalize-space(), 'trained ')]").text  # fmt: skip


def test_the_page_shows_the_map_the_pictures_and_no_error(lake) -> None:
    assert labels(lake) == expected(load_map("paper"))
    assert "trained 5 rules x" in status(lake)
    assert lake.console_errors() == []
    lake.shoot("browser-frozen-lake", height=1150)


def test_clicking_cells_cycles_their_labels_and_retrains(lake) -> None:
    before = sources(lake)
    cell(lake, 0).click()  # S -> G: two goals, no start
    lake.wait_for("cell 0 to read G", lambda: labels(lake)[0] == "G")
    lake.wait_for("the map's problem", lambda: "start" in lake.driver.find_element(By.TAG_NAME, "body").text)
    assert sources(lake)[:4] == before[:4]  # an invalid map keeps the last good pictures
    cell(lake, 0).click()  # G -> F: the label must go (ipywidgets ignores an empty one)
    lake.wait_for("cell 0 to be blank", lambda: labels(lake)[0] == "")
    cell(lake, 0).click()  # F -> H
    cell(lake, 0).click()  # H -> S: valid again
    lake.wait_for("cell 0 to read S", lambda: labels(lake)[0] == "S")
    cell(lake, 1).click()  # F -> H beside the start: every rule retrains
    lake.wait_for("cell 1 to be a hole", lambda: cell(lake, 1).value_of_css_property("background-color") == HOLE)
    assert labels(lake)[1] == ""
    # the explorer's pictures and the episode (SFT along the unchanged demonstration is the same picture)
    lake.wait_for("new pictures", lambda: all(a != b for a, b in zip(sources(lake)[:5], before)))
    assert lake.console_errors() == []


def test_a_random_map_and_a_catalogue_map_show_their_own_labels(lake) -> None:
    before = sources(lake)
    seed = lake.widget("widget-text", "seed").find_element(By.TAG_NAME, "input")
    seed.clear()
    seed.send_keys("2\n")
    lake.button("random map").click()
    rows = random_map((6, 6), 0.25, seed=2)
    lake.wait_for("the random map's labels", lambda: labels(lake) == expected(rows))  # paper's G at cell 21 gone
    lake.wait_for("the player and the bias explorer on the new map", lambda: sources(lake)[4:] != before[4:])
    Select(lake.widget("widget-dropdown", "map").find_element(By.TAG_NAME, "select")).select_by_visible_text("4x4")
    lake.wait_for("the 4x4 map's labels", lambda: labels(lake) == expected(load_map("4x4")))
    assert lake.console_errors() == []


def test_the_table_is_an_html_table_one_line_per_row(lake) -> None:
    table = lake.driver.find_element(By.CSS_SELECTOR, ".iftgym-table table")
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    names = [row.find_element(By.TAG_NAME, "td").text for row in rows]
    assert names == ["sft", "ift", "dpo", "orpo", "ppo"]
    heights = {row.size["height"] for row in rows}
    assert max(heights) < 30, heights  # no cell wrapped onto a second line
    number = re.compile(r"^-?\d+\.\d+ ± \d+\.\d+$")
    first = [td.text for td in rows[0].find_elements(By.TAG_NAME, "td")]
    assert sum(bool(number.match(text)) for text in first) >= 4, first
    body = lake.driver.find_element(By.TAG_NAME, "body").text
    assert body.count("mean ± 95% CI over seeds") == 1  # no second (rich) copy of the table above the explorer
    box = lake.driver.find_element(By.CSS_SELECTOR, ".iftgym-table")
    assert box.value_of_css_property("overflow-x") == "auto"
    lake.shoot("browser-table", box)


def test_dragging_a_slider_retrains_and_redraws(lake, timings, settings) -> None:
    before = sources(lake)
    slider = lake.widget("widget-slider", "IFT lambda")
    readout = slider.find_element(By.CSS_SELECTOR, ".widget-readout")
    handle = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
    assert readout.text == "0.20"
    ActionChains(lake.driver).click_and_hold(handle).move_by_offset(40, 0).move_by_offset(40, 0).release().perform()
    released = time.monotonic()
    lake.wait_for("the lambda readout to move", lambda: readout.text != "0.20")
    lake.wait_for("the explorer's pictures redrawn", lambda: all(a != b for a, b in zip(sources(lake)[:4], before)))
    timings[f"lambda drag released -> pictures redrawn (IFT retrained; {settings})"] = time.monotonic() - released
    step = lake.widget("widget-slider", "show step")
    before = sources(lake)
    ActionChains(lake.driver).click_and_hold(step.find_element(By.CSS_SELECTOR, ".noUi-handle")).move_by_offset(
        -200, 0).release().perform()  # fmt: skip
    released = time.monotonic()
    lake.wait_for("the scrubbed pictures", lambda: all(a != b for a, b in zip(sources(lake)[:3], before)))
    timings[f"show step scrub -> pictures redrawn ({settings})"] = time.monotonic() - released
    assert step.find_element(By.CSS_SELECTOR, ".widget-readout").text == "0"
    assert lake.console_errors() == []


def test_play_moves_the_agent(lake) -> None:
    player = lake.driver.find_element(By.CSS_SELECTOR, ".widget-play")
    step = player.find_element(By.XPATH, "following::div[contains(@class,'widget-slider')][1]")
    readout = step.find_element(By.CSS_SELECTOR, ".widget-readout")
    picture = sources(lake)[4]
    assert readout.text == "0"
    player.find_element(By.XPATH, ".//button[./i[contains(@class, 'fa-play')]]").click()
    lake.wait_for("the player to step", lambda: int(readout.text) >= 2, timeout=30)
    lake.wait_for("the agent drawn at its new cell", lambda: sources(lake)[4] != picture)
    lake.shoot("browser-episode", player.find_element(By.XPATH, "ancestor::div[contains(@class,'widget-vbox')][1]"))
    assert lake.console_errors() == []


def test_the_monte_carlo_check_shows_its_intervals(lake) -> None:
    lake.button("Monte Carlo check").click()
    intervals = "//div[contains(@class,'widget-html-content')][.//table][contains(., 'Monte Carlo')]"
    text = lake.wait_for(
        "the intervals", lambda: "".join(e.text for e in lake.driver.find_elements(By.XPATH, intervals))
    )
    assert "Monte Carlo, 2000 rollouts" in text and "exact inside the interval at" in text
    rows = lake.driver.find_elements(By.XPATH, "//table[.//th[normalize-space()='95% interval']]//tr")
    assert len(rows) == 1 + 6  # the header and the 4x4 map's demonstration: six steps
    button = lake.button("Monte Carlo check")
    lake.shoot("browser-bias", button.find_element(By.XPATH, "ancestor::div[contains(@class,'widget-vbox')][1]"))
    assert lake.console_errors() == []
