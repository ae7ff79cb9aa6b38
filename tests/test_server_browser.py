"""End to end: `lookalike serve` in a subprocess, the web page driven by headless Chromium."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from conftest import synthetic_photo

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).parent / "artifacts"
SRC = Path(__file__).resolve().parents[1] / "src"

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                                reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def server(photo_dir, tmp_path):
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    idx.add([photo_dir])
    idx.close()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("LOOKALIKE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", "from lookalike.cli import main; main()", "serve",
                             "--index", str(tmp_path / "idx"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    token, lines = None, []
    try:
        deadline = time.monotonic() + 90
        while token is None and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            lines.append(line)
            m = re.search(r"write token \(adding/removing images\): (\S+)", line)
            token = m.group(1) if m else None
        assert token, "".join(lines)
        while time.monotonic() < deadline:
            try:
                assert get_json(base + "/healthz")["images"] == 8
                break
            except OSError:
                time.sleep(0.3)
        yield base, token
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download anything
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1200,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


def test_page_search_click_explain_and_add(server, browser, photo_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, token = server
    wait = WebDriverWait(browser, 60)
    browser.get(base + "/")
    wait.until(EC.text_to_be_present_in_element((By.ID, "stats"), "8 images"))

    # pick a file: the same image comes first, with its score and the query time
    browser.find_element(By.ID, "file").send_keys(str(photo_dir / "img3.jpg"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), " ms"))
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert len(cards) == 8
    assert cards[0].find_element(By.CLASS_NAME, "name").text == "img3.jpg"
    assert float(cards[0].find_element(By.CLASS_NAME, "score").text) == pytest.approx(1.0, abs=1e-3)
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"))
    shot = screenshot(browser, tmp_path, "server_search.png")
    assert shot.stat().st_size > 10_000

    # click a result: search by it; it comes first, and its matches can be explained
    second = cards[1]
    target = second.get_attribute("data-id")
    second.find_element(By.TAG_NAME, "img").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), f"image #{target} in"))
    first = browser.find_elements(By.CSS_SELECTOR, "#results .card")[0]
    assert first.get_attribute("data-id") == target
    why = browser.find_elements(By.CSS_SELECTOR, "#results .card")[1].find_element(By.LINK_TEXT, "why?")
    why.click()
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('viewer-img'); return i.complete && i.naturalWidth > 0"))
    assert browser.find_element(By.ID, "viewer").get_attribute("open") is not None
    screenshot(browser, tmp_path, "server_explain.png")
    browser.find_element(By.CSS_SELECTOR, "#viewer button").click()

    # a photo stored on its side: with "turned" ticked, the upright original comes first
    side = tmp_path / "side.png"
    Image.open(photo_dir / "img3.jpg").transpose(Image.Transpose.ROTATE_90).save(side)
    browser.find_element(By.ID, "rotate").click()
    browser.find_element(By.ID, "file").send_keys(str(side))
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "for the image side.png in"))
    first = browser.find_elements(By.CSS_SELECTOR, "#results .card")[0]
    assert first.find_element(By.CLASS_NAME, "name").text == "img3.jpg"
    assert float(first.find_element(By.CLASS_NAME, "score").text) == pytest.approx(1.0, abs=1e-3)
    browser.find_element(By.ID, "rotate").click()

    # add a new image through the page with the token the server printed
    new = tmp_path / "new.png"
    Image.fromarray(synthetic_photo(123)).save(new)
    browser.find_element(By.ID, "file").send_keys(str(new))
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "new.png"))
    browser.find_element(By.CSS_SELECTOR, "#add summary").click()
    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.find_element(By.ID, "add-btn").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "401"))
    browser.find_element(By.ID, "token").clear()
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "add-btn").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "indexed as image #"))
    assert get_json(base + "/healthz")["images"] == 9

    # adding an image that is already indexed (here under another name) names it, adds nothing
    copy = tmp_path / "copy of img5.jpg"
    shutil.copy(photo_dir / "img5.jpg", copy)
    browser.find_element(By.ID, "file").send_keys(str(copy))
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "copy of img5.jpg in"))
    known = browser.find_elements(By.CSS_SELECTOR, "#results .card")[0]
    assert known.find_element(By.CLASS_NAME, "name").text == "img5.jpg"
    browser.find_element(By.ID, "add-btn").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "already indexed as image #"))
    assert browser.find_element(By.ID, "status").text == f"already indexed as image #{known.get_attribute('data-id')}"
    assert get_json(base + "/healthz")["images"] == 9


FITS = """
const button = document.querySelector('#text-form button[type=submit]');
const r = button.getBoundingClientRect();
const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
return {width: window.innerWidth, scroll: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
        left: r.left, right: r.right, height: r.height, visible: hit === button || button.contains(hit)};
"""


@pytest.mark.parametrize("width,height,name", [(1200, 900, "server_wide.png"), (390, 844, "server_phone.png")])
def test_page_fits_the_screen(server, browser, photo_dir, tmp_path, width, height, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = server
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    wait = WebDriverWait(browser, 60)
    browser.get(base + "/")
    wait.until(EC.text_to_be_present_in_element((By.ID, "stats"), "8 images"))
    for stage in ("empty", "results"):
        if stage == "results":
            browser.find_element(By.ID, "file").send_keys(str(photo_dir / "img3.jpg"))
            wait.until(EC.text_to_be_present_in_element((By.ID, "status"), " ms"))
            browser.find_element(By.CSS_SELECTOR, "#add summary").click()  # the token field shown too
        fit = browser.execute_script(FITS)
        if stage == "results":
            screenshot(browser, tmp_path, name)
        assert fit["scroll"] <= width, f"{stage}: the page scrolls sideways at {width} px: {fit}"
        assert fit["width"] == width, fit
        assert 0 <= fit["left"] and fit["right"] <= width and fit["height"] > 0, f"{stage}: {fit}"
        assert fit["visible"], f"{stage}: the Search button is covered: {fit}"
    assert (tmp_path / name).stat().st_size > 10_000
