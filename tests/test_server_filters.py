"""The REST contract of filters, composed queries and pages: /search (GET and POST), /images, /filters."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import synthetic_photo
from lookalike.api import Index
from lookalike.server import create_app
from test_filters import CAMERAS, N, expected, make_collection, spec


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest")
    coll = make_collection(root / "photos")
    ix = Index(root / "idx", "color")
    ix.add([coll])
    ix.close()
    with TestClient(create_app(root / "idx", token="t", reload_every=0)) as c:
        yield c


def names(items) -> set[str]:
    return {Path(h["path"]).name for h in items}


def id_of(c: TestClient, i: int) -> int:
    items = c.get("/images", params={"limit": 100}).json()["items"]
    return next(it["id"] for it in items if it["path"] == spec(i)["name"])


def test_filters_lists_the_choices(client):
    f = client.get("/filters").json()
    assert f["folders"] == ["a", "a/sub", "b"] and f["types"] == ["jpg", "png"]
    assert set(f["cameras"]) == {c[1] for c in CAMERAS if c}
    assert f["date_min"] == min(spec(i)["taken"] for i in range(N)).isoformat()
    assert f["date_max"] == max(spec(i)["taken"] for i in range(N)).isoformat()
    assert (f["width_max"], f["height_max"]) == (320, 240)


@pytest.mark.parametrize("params, pred", [
    ({"folder": "a"}, lambda s: s["folder"].startswith("a")),
    ({"folder": "a/sub"}, lambda s: s["folder"] == "a/sub"),
    ({"date_from": "2022-01-01", "date_to": "2022-12-31"}, lambda s: s["taken"].year == 2022),
    ({"camera": "NIKON"}, lambda s: s["camera"] == CAMERAS[1]),
    ({"min_width": 300, "min_height": 200}, lambda s: s["size"] == (320, 240)),
    ({"max_width": 200, "max_height": 200}, lambda s: s["size"] == (160, 120)),
    ({"type": "png"}, lambda s: s["type"] == "png"),
    ({"type": "jpg,png", "folder": "b"}, lambda s: s["folder"] == "b"),
])
def test_every_search_takes_the_filters(client, params, pred):
    want = expected(pred)
    by_id = client.get("/search", params={"id": id_of(client, 1), "k": N, **params})
    assert by_id.status_code == 200, by_id.text
    assert names(by_id.json()["results"]) == want
    buf = io.BytesIO()
    Image.fromarray(synthetic_photo(1)).save(buf, "PNG")
    posted = client.post("/search", params={"k": N, **params}, files={"image": ("q.png", buf.getvalue(), "image/png")})
    assert posted.status_code == 200, posted.text
    assert names(posted.json()["results"]) == want
    listed = client.get("/images", params={"limit": 100, **params}).json()
    assert listed["total"] == len(want) and names(listed["items"]) == want
    composed = client.get("/search", params={"q": f"#{id_of(client, 1)}", "k": N, **params}).json()
    assert names(composed["results"]) == want


def test_hits_carry_metadata_and_offset_pages(client):
    ref = id_of(client, 5)
    whole = client.get("/search", params={"id": ref, "k": 10}).json()["results"]
    page = client.get("/search", params={"id": ref, "k": 4, "offset": 3}).json()["results"]
    assert [h["id"] for h in page] == [h["id"] for h in whole[3:7]] and page[0]["rank"] == 4
    top = whole[0]
    s = spec(int(Path(top["path"]).stem[1:]))
    assert (top["width"], top["height"], top["type"]) == (*s["size"], s["type"])
    assert top["taken"] == s["taken"].isoformat()
    assert top["camera"] == (s["camera"][1] if s["camera"] else None)
    listed = client.get("/images", params={"offset": 2, "limit": 5}).json()["items"]
    takens = [it["taken"] for it in client.get("/images", params={"limit": 100}).json()["items"]]
    assert takens == sorted(takens, reverse=True) and [it["taken"] for it in listed] == takens[2:7]


def test_composed_query_over_rest(client):
    a, b = id_of(client, 4), id_of(client, 9)
    res = client.get("/search", params={"q": f"#{a} - 0.5:#{b}", "k": 3}).json()["results"]
    assert res[0]["id"] == a and b not in [h["id"] for h in res]


@pytest.mark.parametrize("params", [{"date_from": "2021-13-01"}, {"min_width": -1}, {"q": "#99999"},
                                    {"q": "- #1"}])
def test_bad_parameters_are_4xx_with_a_reason(client, params):
    r = client.get("/search", params={"id": 1, **params} if "q" not in params else params)
    assert 400 <= r.status_code < 500 and r.json()["detail"]


def test_a_keyword_on_an_index_without_text_says_so(client):
    r = client.get("/search", params={"id": 1, "keyword": "cat"})
    assert r.status_code == 501 and "text" in r.json()["detail"]


def test_a_query_path_is_text_not_a_file_for_clients(client, tmp_path):
    """A server never reads a file a client names: only #ID is an image (text on this colour index)."""
    r = client.get("/search", params={"q": str(tmp_path)})
    assert r.status_code == 501 and "text" in r.json()["detail"]


def test_post_search_composes_the_upload_with_q(client):
    buf = io.BytesIO()
    Image.fromarray(synthetic_photo(4)).save(buf, "PNG")
    other = id_of(client, 9)
    plain = client.post("/search", params={"k": 5}, files={"image": ("q.png", buf.getvalue(), "image/png")}).json()
    minus = client.post("/search", params={"k": 5, "q": f"- #{other}"},
                        files={"image": ("q.png", buf.getvalue(), "image/png")})
    assert minus.status_code == 200, minus.text
    got = [h["id"] for h in minus.json()["results"]]
    assert got[0] == plain["results"][0]["id"] and other not in got
    r = client.post("/search", params={"q": f"- #{other}", "rotate": "true"},
                    files={"image": ("q.png", buf.getvalue(), "image/png")})
    assert r.status_code == 400
    assert client.post("/search").status_code == 400
