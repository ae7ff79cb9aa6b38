"""The server under mixed load on 127.0.0.1: 8 client threads search (plain, diffusion, rotated,
verified, text) for 20 s while another thread adds 50 images and removes 25: no request fails, and
every added image is then found first by its own file. Bounded in requests and in time."""
from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

import lookalike
from conftest import synthetic_photo
from lookalike.server import create_app

TOKEN = "load-test-token"
CLIENTS = 8
SEARCH_SECONDS = 20.0
MAX_REQUESTS_PER_CLIENT = 400
WRITES_DEADLINE_S = 240.0


def jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def new_image(i: int) -> np.ndarray:
    """Images unlike the seed photos and unlike each other: a shifted, recoloured synthetic photo."""
    img = synthetic_photo(1000 + i).astype(np.int32)
    img = np.roll(img, (i * 7) % 40, axis=1)
    img[..., i % 3] = (img[..., i % 3] + 60 + 3 * i) % 256
    return img.astype(np.uint8)


@pytest.fixture
def server(tmp_path: Path):
    seed = tmp_path / "seed"
    seed.mkdir()
    for i in range(30):
        Image.fromarray(synthetic_photo(i)).save(seed / f"seed{i}.jpg", quality=90)
    (seed / "seed0.jpg.txt").write_text("a lighthouse by the sea", encoding="utf-8")
    idx = lookalike.open(tmp_path / "idx", pipeline="text")
    idx.add([seed])
    idx.close()
    app = create_app(tmp_path / "idx", token=TOKEN, reload_every=0.5)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not srv.started:
        assert time.monotonic() - t0 < 60, "the server did not start"
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seed
    srv.should_exit = True
    thread.join(timeout=30)


def test_mixed_searches_while_images_come_and_go(server):
    base, seed = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    failures: list[str] = []
    counts = {"search": 0}
    added: dict[int, bytes] = {}
    removed: list[int] = []
    writes_done = threading.Event()
    query = (seed / "seed3.jpg").read_bytes()
    kinds = [
        ("POST", "/search?k=5", query),
        ("POST", "/search?k=5&rerank=diffusion", query),
        ("POST", "/search?k=5&rotate=true", query),
        ("POST", "/search?k=5&rerank=sv", query),
        ("GET", "/search?text=lighthouse&k=5", None),
    ]

    def searcher(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            t_end = time.monotonic() + SEARCH_SECONDS
            for r in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() > t_end and writes_done.is_set():
                    break
                if time.monotonic() > t_end + WRITES_DEADLINE_S:
                    break
                method, url, body = kinds[(n + r) % len(kinds)]
                try:
                    resp = c.post(url, files={"image": ("q.jpg", body, "image/jpeg")}) if method == "POST" \
                        else c.get(url)
                    if resp.status_code != 200 or "results" not in resp.json():
                        failures.append(f"{url}: {resp.status_code} {resp.text[:200]}")
                except httpx.HTTPError as e:
                    failures.append(f"{url}: {type(e).__name__} {e}")
                counts["search"] += 1

    def writer() -> None:
        try:
            with httpx.Client(base_url=base, timeout=120, headers=auth) as c:
                seed_ids = [it["id"] for it in c.get("/images?limit=100").json()["items"]]
                for i in range(50):
                    data = jpeg(new_image(i))
                    resp = c.post("/images", files={"image": (f"new{i}.jpg", data, "image/jpeg")})
                    if resp.status_code not in (200, 201):
                        failures.append(f"add {i}: {resp.status_code} {resp.text[:200]}")
                        continue
                    added[resp.json()["id"]] = data
                    if i % 2 == 1:
                        victim = seed_ids[4 + i // 2]  # seeds 0-3 stay: the queries use them
                        resp = c.delete(f"/images/{victim}")
                        if resp.status_code != 204:
                            failures.append(f"remove {victim}: {resp.status_code} {resp.text[:200]}")
                        removed.append(victim)
        finally:
            writes_done.set()

    threads = [threading.Thread(target=searcher, args=(n,)) for n in range(CLIENTS)]
    w = threading.Thread(target=writer)
    for t in threads:
        t.start()
    w.start()
    w.join(WRITES_DEADLINE_S + SEARCH_SECONDS)
    for t in threads:
        t.join(WRITES_DEADLINE_S + SEARCH_SECONDS + 60)
    assert not w.is_alive() and not any(t.is_alive() for t in threads), "the load test overran its bounds"
    assert failures == [], failures[:5]
    assert len(added) == 50 and len(removed) == 25 and counts["search"] >= CLIENTS
    with httpx.Client(base_url=base, timeout=60) as c:
        assert c.get("/healthz").json()["images"] == 30 + 50 - 25
        for image_id, data in added.items():
            top = c.post("/search?k=1", files={"image": ("q.jpg", data, "image/jpeg")}).json()["results"][0]
            assert top["id"] == image_id
        left = {it["id"] for it in c.get("/images?limit=1000").json()["items"]}
        assert not left & set(removed)
