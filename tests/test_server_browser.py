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
from contextlib import contextmanager
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


@contextmanager
def serving(index_dir: Path, images: int):
    """``lookalike serve`` on a free port in a subprocess: (base URL, write token)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("LOOKALIKE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", "from lookalike.cli import main; main()", "serve",
                             "--index", str(index_dir), "--port", str(port)],
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
                assert get_json(base + "/healthz")["images"] == images
                break
            except OSError:
                time.sleep(0.3)
        yield base, token
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def server(photo_dir, tmp_path):
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    idx.add([photo_dir])
    idx.close()
    with serving(tmp_path / "idx", 8) as started:
        yield started


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


# -- the gallery: collection, "similar", scrolling, filters (desktop and phone) ---------------------
SIZES = [(1200, 900, "wide"), (390, 844, "phone")]


@pytest.fixture(scope="module")
def gallery_index(tmp_path_factory):
    """60 images whose right answers are known: 40 JPEGs in the top folder taken in 2020 by
    'Maker CamA' (96x72), 20 PNGs in trip/ without EXIF, dated 2023 by their mtime (320x240)."""
    root = tmp_path_factory.mktemp("gallery")
    photos = root / "photos"
    (photos / "trip").mkdir(parents=True)
    for i in range(40):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Maker", "CamA"
        exif.get_ifd(0x8769)[0x9003] = f"2020:{1 + i % 12:02d}:{1 + i % 28:02d} 10:00:00"
        Image.fromarray(synthetic_photo(300 + i, size=(96, 72))).save(photos / f"cam{i:02d}.jpg", quality=90, exif=exif)
    trip_time = time.mktime((2023, 6, 15, 12, 0, 0, 0, 0, -1))
    for i in range(20):
        p = photos / "trip" / f"trip{i:02d}.png"
        Image.fromarray(synthetic_photo(400 + i, size=(320, 240))).save(p)
        os.utime(p, (trip_time, trip_time))
    with lookalike.open(root / "idx", pipeline="color") as idx:
        idx.add(photos)
    return root / "idx"


@pytest.fixture(scope="module")
def gallery_server(gallery_index):
    with serving(gallery_index, 60) as started:
        yield started[0]


def at_size(browser, width: int, height: int) -> None:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def cards(browser) -> list[dict]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#results .card')].map(c => ({id: +c.dataset.id, "
        "path: c.querySelector('.name').title.split('\\n')[0], thumb: c.querySelector('img').getAttribute('src')}))")


def scroll_to_end(browser, wait, count: int) -> None:
    """Scroll down until ``count`` cards are shown (more pages load as the end comes into view)."""
    wait.until(lambda d: d.execute_script(
        "window.scrollTo(0, document.body.scrollHeight); return document.querySelectorAll('#results .card').length")
        >= count)


def thumbs_loaded(browser) -> bool:
    return browser.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")


def fits(browser, width: int) -> None:
    scroll = browser.execute_script(
        "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    assert scroll <= width, f"the page scrolls sideways at {width} px ({scroll})"


@pytest.mark.parametrize("width,height,name", SIZES)
def test_gallery_similar_and_scrolling(gallery_server, browser, tmp_path, width, height, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base = gallery_server
    at_size(browser, width, height)
    wait = WebDriverWait(browser, 60)
    browser.get(base + "/")
    # the collection, newest first, a page at a time; only thumbnails are loaded
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "60 images"))
    first_page = cards(browser)
    assert 0 < len(first_page) < 60
    assert all(c["thumb"].startswith(f"/thumbs/{c['id']}?v=") for c in first_page)
    ids = [c["id"] for c in first_page]
    assert ids == sorted(ids, reverse=True) or len(set(ids)) == len(ids)
    scroll_to_end(browser, wait, 60)
    shown = cards(browser)
    assert len(shown) == 60 and len({c["id"] for c in shown}) == 60
    assert browser.find_element(By.ID, "more").get_attribute("hidden") is not None  # nothing left
    wait.until(lambda d: thumbs_loaded(d))
    fits(browser, width)
    screenshot(browser, tmp_path, f"gallery_scrolled_{name}.png")
    originals = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => /\\/images\\/\\d+$/.test(n))")
    assert originals == []  # no original was fetched to show the gallery

    # "similar" on a card: that image first, then its look-alikes, k (12) at a time as the list scrolls
    browser.execute_script("window.scrollTo(0, 0)")
    target = shown[5]
    card = browser.find_element(By.CSS_SELECTOR, f"#results .card[data-id='{target['id']}']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
    card.find_element(By.CSS_SELECTOR, "a.similar").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), f"image #{target['id']} in"))
    wait.until(lambda d: len(cards(d)) >= 12)
    results = cards(browser)
    assert results[0]["id"] == target["id"]
    scroll_to_end(browser, wait, 36)
    results = cards(browser)
    assert len({c["id"] for c in results}) == len(results) >= 36  # later pages, no repeats
    first = [float(x) for x in browser.execute_script(
        "return [...document.querySelectorAll('#results .score')].map(s => s.textContent)")]
    assert first == sorted(first, reverse=True)  # one ranking across pages
    wait.until(lambda d: thumbs_loaded(d))
    fits(browser, width)
    screenshot(browser, tmp_path, f"gallery_similar_{name}.png")


@pytest.mark.parametrize("width,height,name", SIZES)
def test_filters_on_the_page(gallery_server, browser, tmp_path, width, height, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base = gallery_server
    at_size(browser, width, height)
    wait = WebDriverWait(browser, 60)
    browser.get(base + "/")
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "60 images"))
    filters = browser.find_element(By.ID, "filters")
    assert filters.is_displayed()
    filters.find_element(By.TAG_NAME, "summary").click()
    assert not browser.find_element(By.ID, "f-keyword").is_displayed()  # a colour index has no text

    def apply_and_wait(expect_status: str) -> list[dict]:
        """Apply the filters, then scroll until the list has no more pages."""
        browser.execute_script("document.getElementById('status').textContent = ''")
        browser.find_element(By.ID, "f-apply").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), expect_status))
        wait.until(lambda d: d.execute_script(
            "window.scrollTo(0, document.body.scrollHeight);"
            "return document.getElementById('more').hidden && !document.getElementById('status').textContent"
            ".includes('…')"))
        return cards(browser)

    # folder: the collection narrowed to trip/ (20 images)
    folder = Select(browser.find_element(By.ID, "f-folder"))
    folder.select_by_visible_text(next(o.text for o in folder.options if o.text.rstrip("/").endswith("trip")))
    got = apply_and_wait("20 images (filtered)")
    assert len(got) == 20 and all(c["path"].startswith("trip/") for c in got)
    fits(browser, width)
    screenshot(browser, tmp_path, f"gallery_filter_folder_{name}.png")

    # "similar" within the filter: a top-folder JPEG's look-alikes, only from trip/ (k of them)
    folder.select_by_index(0)
    browser.find_element(By.ID, "f-apply").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "60 images"))
    jpg = next(c for c in cards(browser) if c["path"].startswith("cam"))
    browser.execute_script("arguments[0].click()", browser.find_element(
        By.CSS_SELECTOR, f"#results .card[data-id='{jpg['id']}'] a.similar"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), f"image #{jpg['id']} in"))
    browser.find_element(By.XPATH, "//fieldset[@id='f-types']//label[contains(., 'png')]/input").click()
    got = apply_and_wait(f"image #{jpg['id']} in")
    assert len(got) == 20 and all(c["path"].endswith(".png") for c in got)

    # date taken and camera: 2020 from EXIF (the 40 JPEGs), 2023 from file times (the PNGs)
    browser.find_element(By.XPATH, "//fieldset[@id='f-types']//label[contains(., 'png')]/input").click()
    browser.execute_script("document.getElementById('f-date-from').value = '2020-01-01';"
                           "document.getElementById('f-date-to').value = '2020-12-31';")
    got = apply_and_wait(f"image #{jpg['id']} in")
    assert len(got) == 40 and all(c["path"].startswith("cam") for c in got)
    Select(browser.find_element(By.ID, "f-camera")).select_by_visible_text("Maker CamA")
    browser.execute_script("document.getElementById('f-date-from').value = '2023-01-01';"
                           "document.getElementById('f-date-to').value = '';")
    got = apply_and_wait(f"0 results for image #{jpg['id']}")
    assert got == []

    # pixel size: at least 300 px wide leaves the PNGs
    browser.find_element(By.ID, "f-clear").click()
    wait.until(lambda d: d.find_element(By.ID, "filter-count").text == "")
    browser.find_element(By.ID, "f-min-width").send_keys("300")
    got = apply_and_wait(f"image #{jpg['id']} in")
    assert len(got) == 20 and all(c["path"].startswith("trip/") for c in got)
    fits(browser, width)
    screenshot(browser, tmp_path, f"gallery_filter_size_{name}.png")

    # a composed query: this image, less like another one
    browser.find_element(By.ID, "f-clear").click()
    other = got[0]["id"]
    q = browser.find_element(By.ID, "q")
    q.clear()
    q.send_keys(f"#{jpg['id']} - #{other}")
    browser.find_element(By.CSS_SELECTOR, "#q-form button[type=submit]").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), " in "))
    wait.until(lambda d: cards(d) and cards(d)[0]["id"] == jpg["id"])
    assert other not in [c["id"] for c in cards(browser)[:12]]
