"""The masking notebook in a real browser: JupyterLab + headless chromium, driven by selenium.

Starts JupyterLab on a free localhost port with a token, serving a temporary copy of notebooks/ (so nothing in
the repository changes), opens 02_mask_tubes.ipynb in Debian's chromium through Debian's chromedriver, runs all
cells from the Run menu, moves the mask-ratio slider with the keyboard and checks that the drawn figure changes.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`apt-get install chromium chromium-driver`) and selenium.
Without them the test skips, unless MVD_REQUIRE_BROWSER=1 (set by .ci/run), which turns the skip into a failure.
Selenium is given the driver's path and runs offline, so its driver manager never downloads anything.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "02_mask_tubes.ipynb"
CHROMIUM = os.environ.get("MVD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MVD_CHROMEDRIVER", "/usr/bin/chromedriver")
REQUIRE = os.environ.get("MVD_REQUIRE_BROWSER", "") not in ("", "0")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
RUN_TIMEOUT_S = 300  # JupyterLab start, kernel start and the notebook at its smoke defaults, on a busy 2-core CPU
REDRAW_TIMEOUT_S = 60  # one redraw after the slider moved


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"MVD_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server over a copy of notebooks/: yields (base url, token); stopped afterwards."""
    work = tmp_path / "work"
    shutil.copytree(REPO / "notebooks", work / "notebooks")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
    })
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly"] + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {server.returncode}: "
                                   f"{(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not answer within 90 s")
            time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """Headless chromium through the system chromedriver."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        _unavailable(f"chromium ({CHROMIUM}) or chromedriver ({CHROMEDRIVER}) is not installed; "
                     "apt-get install chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[tests]')")
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium manager, should it ever run, may not download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _click_menu(driver, wait, menu: str, item: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    wait.until(EC.element_to_be_clickable(
        (By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{menu}']"))).click()
    wait.until(EC.element_to_be_clickable(
        (By.XPATH, f"//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']"))).click()


def test_mask_ratio_slider_redraws_the_figure(lab, browser, tmp_path):
    before = _digest(REPO / "notebooks" / NOTEBOOK)
    try:
        _run_notebook_and_move_slider(browser, *lab)
    except Exception:
        browser.save_screenshot(str(tmp_path / "page.png"))
        print(f"screenshot of the page: {tmp_path / 'page.png'}; server log: {tmp_path / 'jupyterlab.log'}")
        raise
    assert _digest(REPO / "notebooks" / NOTEBOOK) == before  # the repository's copy is untouched


def _run_notebook_and_move_slider(browser, base: str, token: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, RUN_TIMEOUT_S, poll_frequency=0.5)
    browser.get(f"{base}/lab/tree/notebooks/{NOTEBOOK}?reset&token={token}")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
    # the kernel is up when the toolbar's kernel status says Idle
    wait.until(lambda d: d.find_elements(By.XPATH, "//*[contains(@class,'jp-Notebook-ExecutionIndicator')"
                                                   " and contains(@title,'Kernel status: Idle')]")
               or d.find_elements(By.XPATH, "//*[contains(text(),'| Idle')]"))
    _click_menu(browser, wait, "Run", "Run All Cells")

    # the last code cell shows the sliders and, in an Output widget, the drawing
    slider = wait.until(EC.presence_of_element_located(
        (By.XPATH, "//div[contains(@class,'widget-slider')][.//label[text()='mask ratio']]")))
    drawing_img = (By.CSS_SELECTOR, ".widget-output img")
    wait.until(EC.presence_of_element_located(drawing_img))
    first = browser.find_element(*drawing_img).get_attribute("src")
    assert first.startswith("data:image/png;base64,") and len(first) > 1000
    readout = slider.find_element(By.CSS_SELECTOR, ".widget-readout")
    assert readout.text == "0.90"
    stderr = browser.find_elements(
        By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [e.text[:500] for e in stderr if "Traceback" in e.text]  # JupyterLab shows errors as stderr
    assert not tracebacks, tracebacks

    handle = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    handle.click()
    for _ in range(4):  # 0.90 -> 0.70 in steps of 0.05
        handle.send_keys(Keys.ARROW_LEFT)
    # each key press may redraw, replacing the image element: read its source inside the wait, which retries
    # when the element it found was replaced meanwhile
    redraw = WebDriverWait(browser, REDRAW_TIMEOUT_S, poll_frequency=0.5,
                           ignored_exceptions=(StaleElementReferenceException,))
    redraw.until(lambda d: readout.text == "0.70")
    second = redraw.until(lambda d: (src := d.find_element(*drawing_img).get_attribute("src")) != first and src)
    assert second.startswith("data:image/png;base64,") and second != first
