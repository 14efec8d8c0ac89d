"""Browser tests: ``iftgym explore`` and JupyterLab on loopback, driven by headless Chromium through selenium as a
person would drive them. Skipped, with the reason, only where Chromium or its driver cannot be found (``.ci/run``
installs Debian's ``chromium`` and ``chromium-driver``).

``pytest tests/browser --screenshots docs/figures`` also saves the pages' pictures for the README: the explorers then
train with their default settings (as a person sees them; minutes on a busy machine) and the browser draws at a
device pixel ratio of 1 (smaller files)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")
START_SECONDS = 120  # a busy two-core machine takes tens of seconds to start a kernel and train
SHOOTING_SECONDS = 900  # with --screenshots the explorers train with their default settings
TIMINGS: dict[str, float] = {}  # measured in the tests, printed at the end of the run


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--screenshots", default=None, metavar="DIR",
                     help="browser tests: save the pages' screenshots (the README's pictures) in DIR")  # fmt: skip


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "browser timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")


def _found(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """The paths of Chromium and its driver, or the test skipped with the reason."""
    browser, driver = _found(BROWSERS), _found(DRIVERS)
    if browser is None or driver is None:
        missing = " and ".join(what for what, path in (("chromium", browser), ("chromedriver", driver)) if not path)
        pytest.skip(f"{missing} not found (Debian: apt-get install chromium chromium-driver; .ci/run installs them)")
    return browser, driver


@pytest.fixture(scope="session")
def shooting(request: pytest.FixtureRequest) -> str | None:
    """The ``--screenshots`` folder, or ``None``."""
    return request.config.getoption("--screenshots", default=None)


@pytest.fixture(scope="session")
def small(shooting: str | None) -> list[str]:
    """The explorers' settings for the tests (2 seeds, 20 steps: seconds per change), none with ``--screenshots``
    (the defaults, as a person sees them)."""
    return [] if shooting else ["--seeds", "2", "--steps", "20"]


@pytest.fixture(scope="module")
def browser(chromium: tuple[str, str], shooting: str | None) -> Iterator[WebDriver]:
    """A headless Chromium at 1400x1800 CSS pixels and a device pixel ratio of 2 (a high-density screen; 1 with
    ``--screenshots``), its console log kept."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1800", f"--force-device-scale-factor={1 if shooting else 2}",
                     "--no-proxy-server"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromium[1]))
    driver.set_page_load_timeout(SHOOTING_SECONDS if shooting else START_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


class Server:
    """``iftgym explore`` running in the background; ``url`` once it listens, ``started`` when it was started."""

    def __init__(self, args: list[str]) -> None:
        port = _free_port()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "iftgym", "explore", *args, "--no-browser", "--port",
                                         str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env)  # fmt: skip
        line = self.process.stdout.readline()  # the address, printed once the server listens
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            self.stop()
            pytest.fail(f"iftgym explore did not print its address: {line!r} {self.process.stderr.read()!r}")
        self.url = found.group(0)
        self.listening = time.monotonic()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[..., Server]]:
    """``serve(*args)``: start ``iftgym explore *args``; every server started is stopped after the module."""
    servers: list[Server] = []

    def start(*args: str) -> Server:
        servers.append(Server(list(args)))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


class Page:
    """An explorer's page in the browser, with what the tests do on it: wait, find widgets, read the console, save
    screenshots (with ``--screenshots DIR``)."""

    def __init__(self, driver: WebDriver, folder: str | None) -> None:
        self.driver, self.folder = driver, folder
        self.timeout = SHOOTING_SECONDS if folder else START_SECONDS

    def open(self, server: Server) -> float:
        """Load ``server``'s page and wait until its pictures show; the seconds since the server was started."""
        self.driver.get(server.url)
        self.wait_for("the page's pictures", lambda: len(self.images()) >= 1 and all(self.loaded(i) for i in
                                                                                     self.images()))  # fmt: skip
        return time.monotonic() - server.started

    def images(self) -> list[WebElement]:
        """The shown image widgets, top to bottom."""
        return [image for image in self.driver.find_elements(By.CSS_SELECTOR, "img.widget-image")
                if image.is_displayed()]  # fmt: skip

    def loaded(self, image: WebElement) -> bool:
        """Whether ``image`` holds a picture the browser could decode (a broken image has no natural width)."""
        return bool(self.driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image))

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float | None = None) -> Any:
        """``check()``'s first truthy value, polled every 0.1 s; a timeout (default: the page's) fails the test
        naming ``what``."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = check()
            except (StaleElementReferenceException, WebDriverException) as err:  # the page redrew under the check
                value, last = None, err
            if value:
                return value
            error = self.error_output()
            if error:
                pytest.fail(f"the page shows an error while waiting for {what}: {error[-1500:]}")
            time.sleep(0.1)
        shot = Path(tempfile.gettempdir()) / f"iftgym-browser-{re.sub(r'[^a-z0-9]+', '-', what.lower())}.png"
        self.driver.save_screenshot(str(shot))
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (the page: {shot})"
                    + (f" (last error: {last})" if last else ""))  # fmt: skip

    def error_output(self) -> str:
        """The text of an error the page's code raised (a traceback in an output area: Voila and JupyterLab show
        them so), or ""."""
        return self.driver.execute_script(
            "const outputs = document.querySelectorAll('[data-mime-type=\"application/vnd.jupyter.stderr\"]');"
            "const error = Array.from(outputs).find(e => e.innerText.includes('Traceback'));"
            "return error ? error.innerText : '';"
        )

    def widget(self, kind: str, label: str) -> WebElement:
        """The widget of CSS class ``kind`` (``widget-slider``, ``widget-dropdown``...) described as ``label``."""
        return self.driver.find_element(
            By.XPATH, f"//div[contains(@class, '{kind}')][./label[normalize-space()='{label}']]"
        )

    def button(self, text: str) -> WebElement:
        return self.driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']")

    def console_errors(self) -> list[str]:
        """The browser console's errors since the last call."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def shoot(self, name: str, element: WebElement | None = None, height: int | None = None) -> None:
        """With ``--screenshots DIR``: one element, or the top ``height`` CSS pixels of the page (scrolled to the
        top), saved as ``DIR/name.png``."""
        if self.folder is None:
            return
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        self.driver.execute_script("document.activeElement && document.activeElement.blur()")
        if element is not None:
            self.driver.execute_script("arguments[0].scrollIntoView()", element)
            png = element.screenshot_as_png
        else:
            size = self.driver.get_window_size()
            self.driver.execute_script("window.scrollTo(0, 0)")
            if height:
                self.driver.set_window_size(size["width"], height)
            png = self.driver.get_screenshot_as_png()
            self.driver.set_window_size(size["width"], size["height"])
        (Path(self.folder) / f"{name}.png").write_bytes(png)


@pytest.fixture(scope="module")
def page(browser: WebDriver, shooting: str | None) -> Page:
    return Page(browser, shooting)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def timings() -> dict[str, float]:
    """Seconds measured by the tests, by what was measured: printed at the end of the run."""
    return TIMINGS
