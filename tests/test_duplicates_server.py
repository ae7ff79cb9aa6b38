"""The duplicates endpoints: groups, the review page, moving chosen files behind the write token."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import lookalike
from dupdata import make_collection
from lookalike.server import create_app

TOKEN = "dup-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served(tmp_path):
    photos = make_collection(tmp_path)
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    idx.add(photos)
    idx.close()
    with TestClient(create_app(tmp_path / "idx", token=TOKEN, reload_every=0)) as c:
        yield c, tmp_path


def test_groups_page_and_link(served):
    c, _ = served
    body = c.get("/duplicates").json()
    assert sorted(len(g["members"]) for g in body["groups"]) == [3, 7] and body["duplicates"] == 8
    m = body["groups"][0]["members"][0]
    assert set(m) >= {"id", "path", "width", "height", "size", "mtime", "action", "kind", "score"}
    assert not m["path"].startswith("/")  # shown relative to the collection
    assert c.get("/duplicates?preset=exact").json()["duplicates"] == 2
    assert c.get("/duplicates?preset=nope").status_code == 400
    assert c.get("/duplicates?keep=nope").status_code == 400
    page = c.get("/duplicates/review")
    assert page.status_code == 200 and "duplicates.js" in page.text
    for asset in ("/static/duplicates.js", "/static/duplicates.css"):
        r = c.get(asset)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    assert 'href="/duplicates/review"' in c.get("/").text


def test_remove_needs_the_token_and_keeps_one_of_each_group(served):
    c, root = served
    groups = c.get("/duplicates").json()["groups"]
    scene = max(groups, key=lambda g: len(g["members"]))
    every = [m["id"] for m in scene["members"]]
    assert c.post("/duplicates/remove", json={"ids": every[1:]}).status_code == 401
    assert c.post("/duplicates/remove", json={"ids": every[1:]},
                  headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = c.post("/duplicates/remove", json={"ids": every}, headers=AUTH)
    assert r.status_code == 409 and "keep at least one" in r.json()["detail"]
    lonely = c.get("/images?limit=100").json()["items"]
    outside = next(it["id"] for it in lonely if it["path"].endswith("unrelated_b.jpg"))
    assert c.post("/duplicates/remove", json={"ids": [outside]}, headers=AUTH).status_code == 409
    files_before = {p.name for p in (root / "photos").rglob("*") if p.is_file()}
    assert len(files_before) == 12
    removed = [m for m in scene["members"] if m["action"] == "remove"]
    r = c.post("/duplicates/remove", json={"ids": [m["id"] for m in removed]}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["moved"] == len(removed) == 6
    moved = {p.name for p in (root / "idx" / "duplicates-removed").rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert moved == {Path(m["path"]).name for m in removed}
    assert {p.name for p in (root / "photos").rglob("*") if p.is_file()} == files_before - moved
    assert c.get("/healthz").json()["images"] == 12 - 6
    assert sorted(len(g["members"]) for g in c.get("/duplicates").json()["groups"]) == [3]
