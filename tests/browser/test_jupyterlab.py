"""The Frozen Lake notebook in JupyterLab on loopback, in a real browser: Run All shows the explorers, a map cell
click changes its label and retrains, and the console has no errors (small settings: ``IFTGYM_NOTEBOOK_SMALL``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_frozen_lake.ipynb"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, shooting: str | None):
    """JupyterLab serving a copy of the notebook on 127.0.0.1 (no token: loopback only, stopped after the module);
    the notebook's small settings but with ``--screenshots``."""
    pytest.importorskip("jupyterlab")
    folder = tmp_path_factory.mktemp("lab")
    root = folder / "root"  # what JupyterLab shows: the notebook alone (its log and settings beside it)
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IFTGYM_NOTEBOOK_SMALL": "" if shooting else "1",
           "JUPYTER_CONFIG_DIR": str(folder / ".config"), "JUPYTERLAB_SETTINGS_DIR": str(folder / ".settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(folder / ".workspaces"),
           "JUPYTER_RUNTIME_DIR": str(folder / ".runtime")}  # fmt: skip
    notification = folder / ".settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false"}')  # no toast asking to fetch Jupyter's news
    log = (folder / "lab.log").open("w")
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--IdentityProvider.token=",
               "--ServerApp.password=", f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
               "--LabApp.extension_manager=readonly",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"JupyterLab did not start: {(folder / 'lab.log').read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_the_notebook_runs_in_jupyterlab_and_its_map_responds(lab, page) -> None:
    driver = page.driver
    driver.get(lab)
    run_menu = "//div[@class='lm-MenuBar-itemLabel'][.='Run']"
    page.wait_for("the notebook's cells", lambda: driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"))
    page.wait_for("the kernel to be idle", lambda: driver.find_elements(
        By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']"), timeout=60)  # fmt: skip
    run_all = "//li[contains(@class, 'lm-Menu-item')][.//div[normalize-space()='Run All Cells']]"

    def started() -> bool:
        """Whether a cell has started running (its prompt reads [*] or a number)."""
        prompts = driver.execute_script(
            "return Array.from(document.querySelectorAll('.jp-InputPrompt'), p => p.innerText)"
        )
        return any(text.strip() not in ("", "[ ]:") for text in prompts)

    for _ in range(3):  # a click that lands while JupyterLab still focuses the notebook runs nothing: again
        page.wait_for("the Run menu", lambda: driver.find_element(By.XPATH, run_menu))
        driver.find_element(By.XPATH, run_menu).click()
        page.wait_for("Run All Cells", lambda: driver.find_element(By.XPATH, run_all).is_displayed(), timeout=20)
        driver.find_element(By.XPATH, run_all).click()
        deadline = time.monotonic() + 15
        while not started() and time.monotonic() < deadline:
            time.sleep(0.2)
        if started():
            break
    page.wait_for("the six pictures", lambda: len(page.images()) == 6 and all(map(page.loaded, page.images())))

    def labels() -> list[str]:
        texts = driver.execute_script(
            "return Array.from(document.querySelectorAll('.widget-gridbox button'), b => b.innerText)"
        )
        return [text.replace("\u00a0", " ").strip() for text in texts]

    assert labels()[0] == "S" and labels().count("G") == 1
    before = [image.get_attribute("src") for image in page.images()]
    driver.find_elements(By.CSS_SELECTOR, ".widget-gridbox button")[0].click()  # S -> G
    page.wait_for("cell 0 to read G", lambda: labels()[0] == "G")
    driver.find_elements(By.CSS_SELECTOR, ".widget-gridbox button")[0].click()  # G -> F
    page.wait_for("cell 0 to be blank", lambda: labels()[0] == "")
    for _ in range(2):  # F -> H -> S
        driver.find_elements(By.CSS_SELECTOR, ".widget-gridbox button")[0].click()
    driver.find_elements(By.CSS_SELECTOR, ".widget-gridbox button")[2].click()  # F -> H: retrains
    page.wait_for("new pictures", lambda: [i.get_attribute("src") for i in page.images()][:4] != before[:4])
    page.shoot("browser-jupyterlab", height=1100)
    assert page.console_errors() == []
