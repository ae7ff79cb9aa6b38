"""The duplicates review page in headless Chromium, at desktop and phone widths."""
from __future__ import annotations

import os

import pytest

import lookalike
from dupdata import make_collection
from test_server_browser import CHROMIUM, DRIVER, browser, get_json, screenshot, serving  # noqa: F401

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                                reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER})")


@pytest.fixture
def dup_server(tmp_path):
    photos = make_collection(tmp_path)
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    idx.add(photos)
    idx.close()
    with serving(tmp_path / "idx", images=12) as (base, token):
        yield base, token, tmp_path


FITS = """
const b = document.getElementById('remove-btn').getBoundingClientRect();
return {width: window.innerWidth, scroll: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
        left: b.left, right: b.right};
"""


@pytest.mark.parametrize("width,height,name", [(1200, 900, "duplicates_wide.png"), (390, 844, "duplicates_phone.png")])
def test_review_page_groups_choices_and_move(dup_server, browser, tmp_path, width, height, name):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, token, root = dup_server
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
    wait = WebDriverWait(browser, 120)
    browser.get(base + "/")
    browser.find_element(By.LINK_TEXT, "duplicates").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "groups"))
    groups = browser.find_elements(By.CSS_SELECTOR, "#groups .group")
    assert sorted(len(g.find_elements(By.CSS_SELECTOR, ".member")) for g in groups) == [3, 7]
    assert "8 files suggested for removal" in browser.find_element(By.ID, "status").text
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#groups img')].every(i => i.complete && i.naturalWidth > 0)"))
    fit = browser.execute_script(FITS)
    assert fit["scroll"] <= width and 0 <= fit["left"] and fit["right"] <= width, fit
    shot = screenshot(browser, tmp_path, name)
    assert shot.stat().st_size > 10_000

    # mark every file of the small group "remove": refused in the page, nothing moved
    small = min(groups, key=lambda g: len(g.find_elements(By.CSS_SELECTOR, ".member")))
    for radio in small.find_elements(By.CSS_SELECTOR, "input[value=remove]"):
        browser.execute_script("arguments[0].click()", radio)
    browser.find_element(By.ID, "token").send_keys(token)
    browser.execute_script("arguments[0].click()", browser.find_element(By.ID, "remove-btn"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "keep at least one"))
    assert get_json(base + "/healthz")["images"] == 12

    # keep the first of the small group; a wrong token is refused; the right one moves the others
    browser.execute_script("arguments[0].click()", small.find_elements(By.CSS_SELECTOR, "input[value=keep]")[0])
    browser.find_element(By.ID, "token").clear()
    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.execute_script("arguments[0].click()", browser.find_element(By.ID, "remove-btn"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "401"))
    browser.find_element(By.ID, "token").clear()
    browser.find_element(By.ID, "token").send_keys(token)
    browser.execute_script("arguments[0].click()", browser.find_element(By.ID, "remove-btn"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "moved 8 files"))
    assert get_json(base + "/healthz")["images"] == 4
    moved = [p for p in (root / "idx" / "duplicates-removed").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(moved) == 8
    assert browser.find_elements(By.CSS_SELECTOR, "#groups .group") == []
