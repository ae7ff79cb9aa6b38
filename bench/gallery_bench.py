"""The web page's time to show 50 results from a 10,000-image index, measured in headless Chromium.

    python bench/gallery_bench.py [--images 10000] [--k 50] [--runs 7] [--work /tmp/gallery-bench]

Generates ``--images`` small synthetic photos (96x72 JPEG, in 100 folders; kept in ``--work`` and
reused), indexes them with the ``color`` pipeline (thumbnails are made while indexing), serves the
index with ``lookalike serve`` on 127.0.0.1 and opens the page in headless Chromium at 1200x900:

- ``open``: a fresh page at ``/?id=N&k=50`` (an indexed image's look-alikes), timed from the start
  of navigation until 50 result cards are shown with every thumbnail decoded (browser cache cleared);
- ``click``: on a loaded page, "similar" on another result, timed from the click to the same point
  (cache cleared, so the new thumbnails come from the server);
- ``click_again``: then "similar" on the first result (the same query again), the browser cache kept:
  its thumbnails come from the cache (their URLs name their content, so they are kept for good).

Prints one JSON object: medians and all runs in ms, the index build time, and the load average.
Bounded: at most ``--runs`` of each, each within 60 s.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# In the page: optionally click "similar" on a card, then poll until the status names the query and
# k result cards are shown with every thumbnail decoded; returns [start, shown] in ms (performance.now()).
SHOWN = r"""
const [k, status, card, done] = arguments;
const t0 = performance.now();
if (card) card.querySelector('a.similar').click();
(function poll() {
  const imgs = [...document.querySelectorAll('#results .card img')];
  if (document.getElementById('status').textContent.includes(status) && imgs.length >= k
      && imgs.every(i => i.complete && i.naturalWidth > 0)) {
    const t1 = performance.now();
    const after = performance.getEntriesByType('resource').filter(e => e.startTime >= t0 - 1);
    const search = after.filter(e => /\/search\?/.test(e.name));
    const thumbs = after.filter(e => /\/thumbs\//.test(e.name));
    const span = (es) => es.length ? Math.max(...es.map(e => e.responseEnd)) - Math.min(...es.map(e => e.startTime)) : 0;
    performance.clearResourceTimings();
    done([t0, t1, span(search), span(thumbs)]);
  } else setTimeout(poll, 1);
})();
"""


def photo(rng: np.random.Generator, w: int = 96, h: int = 72) -> np.ndarray:
    """A small distinctive image: a colour gradient with a few blocks of colour."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = rng.uniform(0, 255, 3) + xx[..., None] * rng.uniform(-2, 2, 3) + yy[..., None] * rng.uniform(-2, 2, 3)
    for _ in range(4):
        x, y = rng.integers(0, w - 8), rng.integers(0, h - 8)
        img[y:y + rng.integers(6, 30), x:x + rng.integers(6, 30)] = rng.uniform(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_collection(folder: Path, n: int) -> None:
    have = sum(1 for _ in folder.rglob("*.jpg")) if folder.exists() else 0
    if have == n:
        return
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / f"f{i % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(rng)).save(sub / f"img{i:05d}.jpg", quality=85)


def build_index(photos: Path, index: Path) -> float | None:
    sys.path.insert(0, str(ROOT / "src"))
    import lookalike

    if (index / "catalog.sqlite").exists():
        return None
    t0 = time.perf_counter()
    with lookalike.open(index, pipeline="color") as idx:
        idx.add(photos)
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(index: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(index), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
                json.loads(r.read())
                return proc, base
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read()) from None
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start in 120 s")


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={profile}", "--window-size=1200,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    driver.execute_cdp_cmd("Network.enable", {})
    return driver


def shown(driver, k: int, status: str, card=None) -> list[float]:
    """[start, shown, the search request's time, the span of the thumbnail requests] in ms."""
    return driver.execute_async_script(SHOWN, k, status, card)


def restore(hidden: Path, index: Path) -> None:
    for p in hidden.glob("thumbs.sqlite*") if hidden.exists() else []:
        p.rename(index / p.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gallery-bench"))
    ap.add_argument("--without-thumbs", action="store_true", help="serve as an index made without thumbnails")
    args = ap.parse_args()
    photos, index = args.work / "photos", args.work / f"idx-{args.images}"
    t0 = time.perf_counter()
    make_collection(photos, args.images)
    generated_s = time.perf_counter() - t0
    built_s = build_index(photos, index)
    hidden = args.work / "thumbs-hidden"
    if args.without_thumbs:  # as an index made before thumbnails: the server makes them from originals
        hidden.mkdir(exist_ok=True)
        for p in index.glob("thumbs.sqlite*"):
            p.rename(hidden / p.name)
    try:
        proc, base = serve(index)
    except BaseException:
        restore(hidden, index)
        raise
    driver = browser(args.work / "chrome-profile")
    rng = np.random.default_rng(1)
    ids = [int(i) for i in rng.choice(np.arange(1, args.images + 1), 3 * args.runs, replace=False)]
    timings: dict[str, list[float]] = {"open": [], "click": [], "click_again": []}
    parts: dict[str, list[float]] = {f"{n}_{p}": [] for n in ("click", "click_again") for p in ("search_request", "thumbnails")}
    try:
        driver.get(base + "/")  # warm the server (first requests import and build what they need)
        for qid in ids[:args.runs]:
            driver.execute_cdp_cmd("Network.clearBrowserCache", {})
            driver.get(f"{base}/?id={qid}&k={args.k}")
            t = shown(driver, args.k, f"image #{qid} in")
            timings["open"].append(t[1])  # since navigation start
            # "similar" on the last result (cache cleared), then on the first of its results (the same query)
            for name in ("click", "click_again"):
                if name == "click":
                    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
                card = driver.find_elements("css selector", "#results .card")[-1 if name == "click" else 0]
                t0, t1, search_ms, thumbs_ms = shown(driver, args.k, f"image #{card.get_attribute('data-id')} in", card)
                timings[name].append(t1 - t0)
                parts[name + "_search_request"].append(search_ms)
                parts[name + "_thumbnails"].append(thumbs_ms)
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=20)
        restore(hidden, index)
    out = {
        "images": args.images, "k": args.k, "runs": args.runs, "pipeline": "color", "viewport": "1200x900",
        "stored_thumbnails": not args.without_thumbs,
        "median_ms": {k: round(statistics.median(v), 1) for k, v in timings.items()},
        "median_parts_ms": {k: round(statistics.median(v), 1) for k, v in parts.items()},
        "all_ms": {k: [round(x, 1) for x in v] for k, v in timings.items()},
        "index_build_s": round(built_s, 1) if built_s is not None else "reused",
        "generated_s": round(generated_s, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python bench/gallery_bench.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        sys.exit(f"needs chromium and chromedriver ({CHROMIUM}, {DRIVER})")
    main()
