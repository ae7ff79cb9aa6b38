"""The HTTP API on a small colour-pipeline index: every endpoint and every safety rule."""
from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from conftest import synthetic_photo
from lookalike.api import Index
from lookalike.server import create_app
from lookalike.engine.locks import RWLock
from lookalike.engine.thumbs import ThumbStore

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(synthetic_photo(seed)).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture
def index_dir(photo_dir: Path, tmp_path: Path) -> Path:
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    (photo_dir / "broken.jpg").write_text("not an image")  # recorded as an error row, never served
    idx.add([photo_dir])
    idx.close()
    return tmp_path / "idx"


@pytest.fixture
def client(index_dir: Path):
    with TestClient(create_app(index_dir, token=TOKEN, max_upload_mb=0.25, reload_every=0)) as c:
        yield c


def drop_thumbnails(index_dir: Path) -> None:
    for p in index_dir.glob("thumbs.sqlite*"):
        p.unlink()


def ids_of(c: TestClient, name: str) -> int:
    items = c.get("/images?limit=100").json()["items"]
    return next(it["id"] for it in items if it["path"].endswith(name))


# -- reading -------------------------------------------------------------------------------------
def test_health_stats_listing_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok", "images": 8}
    s = client.get("/stats").json()
    assert (s["images"], s["errors"], s["pipeline"], s["store"]) == (8, 1, "color", "FlatStore")
    assert "index" not in s and s["max_upload_bytes"] == int(0.25 * 1024 * 1024)
    page = client.get("/images?offset=2&limit=3").json()
    assert page["total"] == 8 and len(page["items"]) == 3 and page["offset"] == 2
    html = client.get("/")
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert "default-src 'self'" in html.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    assert "http" not in html.text.replace("http-equiv", "")  # nothing from the internet
    assert client.get("/openapi.json").json()["info"]["title"] == "lookalike"
    docs = client.get("/docs").text  # the API docs page works offline too
    assert "swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    js = docs.split('src="')[1].split('"')[0]
    assert client.get(js).status_code == 200


def test_search_by_upload_by_id_and_text(client, photo_dir):
    r = client.post("/search?k=3", files={"image": ("q.jpg", (photo_dir / "img3.jpg").read_bytes(), "image/jpeg")})
    body = r.json()
    assert r.status_code == 200 and len(body["results"]) == 3 and body["took_ms"] > 0
    top = body["results"][0]
    assert top["path"].endswith("img3.jpg") and top["score"] == pytest.approx(1.0, abs=1e-4)
    assert set(top) >= {"id", "path", "score"}
    r = client.get(f"/search?id={top['id']}&k=2").json()
    assert r["results"][0]["id"] == top["id"] and len(r["results"]) == 2
    assert client.get("/search?id=9999").status_code == 404
    assert client.get("/search").status_code == 400
    assert client.get("/search?id=1&text=a").status_code == 400
    r = client.get("/search?text=a red car")
    assert r.status_code == 501 and "not supported by pipeline 'color'" in r.json()["detail"]
    assert client.get("/search?id=1&k=0").status_code == 422


def test_search_with_rerank_steps(client, photo_dir):
    i = ids_of(client, "img3.jpg")
    plain = client.get(f"/search?id={i}&k=8").json()["results"]
    assert client.get(f"/search?id={i}&k=8&rerank=aqe").status_code == 200
    r = client.get(f"/search?id={i}&k=8&rerank=aqe(min_sim=0,recip=0)")  # a step with parameters
    assert r.status_code == 200
    got = r.json()["results"]
    assert got[0]["id"] == i and sorted(x["id"] for x in got) == sorted(x["id"] for x in plain)
    moved = max(abs(a["score"] - b["score"]) for a, b in zip(got, plain))
    assert moved > 1e-3  # query expansion re-scored them
    up = client.post("/search?k=3&rerank=dba%2Baqe",
                     files={"image": ("q.jpg", (photo_dir / "img3.jpg").read_bytes(), "image/jpeg")})
    assert up.status_code == 200 and up.json()["results"][0]["path"].endswith("img3.jpg")
    raw = client.get(f"/search?id={i}&k=8&rerank=dba+aqe")  # "+" unescaped arrives as a space
    assert raw.status_code == 200
    assert raw.json()["results"] == client.get(f"/search?id={i}&k=8&rerank=dba,aqe").json()["results"]
    bad = client.get(f"/search?id={i}&rerank=nonsense")
    assert bad.status_code == 400 and "unknown re-rank step 'nonsense'" in bad.json()["detail"]
    assert client.get(f"/search?id={i}&rerank=a;b").status_code == 422


def test_search_by_upload_turned_on_its_side(client, photo_dir):
    buf = io.BytesIO()
    Image.open(photo_dir / "img3.jpg").transpose(Image.Transpose.ROTATE_90).save(buf, "PNG")
    files = {"image": ("side.png", buf.getvalue(), "image/png")}
    plain = client.post("/search?k=8", files=files).json()["results"]
    turned = client.post("/search?k=8&rotate=true", files=files).json()["results"]
    assert turned[0]["path"].endswith("img3.jpg") and turned[0]["score"] == pytest.approx(1.0, abs=1e-4)
    before = next(r["score"] for r in plain if r["path"].endswith("img3.jpg"))
    assert before < turned[0]["score"] - 1e-3


def test_originals_and_stored_thumbnails(client, index_dir, photo_dir):
    i = ids_of(client, "img2.jpg")
    r = client.get(f"/images/{i}")
    assert r.status_code == 200 and r.content == (photo_dir / "img2.jpg").read_bytes()
    item = next(it for it in client.get("/images?limit=100").json()["items"] if it["id"] == i)
    digest = client.app.state.index.catalog.get(i).hash
    assert item["thumb"] == f"/thumbs/{i}?v={digest[:16]}"
    stored = ThumbStore(index_dir / "thumbs.sqlite", readonly=True).read(digest)  # made when it was indexed
    t = client.get(item["thumb"])
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg" and t.content == stored
    assert Image.open(io.BytesIO(t.content)).size == (160, 120)  # never upscaled
    assert "immutable" in t.headers["cache-control"] and t.headers["etag"] == f'"{digest[:16]}"'
    assert client.get(f"/thumbs/{i}").headers["cache-control"] == "no-cache"  # no version: revalidated
    again = client.get(item["thumb"], headers={"If-None-Match": t.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get(f"/thumbs/{i}", headers={"If-None-Match": '"0123"'}).status_code == 200
    assert client.get(f"/images/{i}/thumb").content == t.content
    assert client.get("/images/9999").status_code == 404
    assert client.get("/thumbs/9999").status_code == 404
    assert client.get("/images/9999/thumb").status_code == 404
    hit = client.get(f"/search?id={i}&k=1").json()["results"][0]
    assert hit["id"] == i and hit["thumb"] == item["thumb"]


def test_thumbnails_of_an_index_made_without_them_are_never_written_by_the_server(client, index_dir, photo_dir):
    drop_thumbnails(index_dir)  # as an index made before thumbnails
    i = ids_of(client, "img2.jpg")
    before = sorted(p.name for p in index_dir.rglob("*"))
    t = client.get(f"/thumbs/{i}")
    assert t.status_code == 200 and Image.open(io.BytesIO(t.content)).size == (160, 120)
    assert client.get(f"/thumbs/{i}").content == t.content and len(client.app.state.thumbs.made) == 1
    assert sorted(p.name for p in index_dir.rglob("*")) == before
    (photo_dir / "img3.jpg").write_bytes((photo_dir / "img4.jpg").read_bytes())  # not the indexed image now
    assert client.get(f"/thumbs/{ids_of(client, 'img3.jpg')}").status_code == 404
    # the next indexing run makes the missing ones (of files still as indexed)
    with Index(index_dir) as ix:
        rep = ix.add(photo_dir)
    assert rep.updated == 1 and rep.reused == 1  # img3 now holds img4's content: one thumbnail for both
    assert len(ThumbStore(index_dir / "thumbs.sqlite").digests()) == 7


def test_only_indexed_files_are_served(client, index_dir):
    broken = client.app.state.index.catalog.by_path(str(index_dir.parent / "photos" / "broken.jpg"))
    assert broken is not None and broken.status == "error"
    assert client.get(f"/images/{broken.id}").status_code == 404  # an error row is not served
    for url in ("/images/../../etc/passwd", "/images/%2e%2e/%2e%2e/etc/passwd", "/images/..%2F..%2Fetc%2Fpasswd",
                "/images/1/../../../etc/passwd", "/images/-1", "/images/1.0", "/static/../catalog.sqlite",
                "/static/%2e%2e/app.py", "/images/abc/thumb"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert b"root:" not in r.content and b"SQLite" not in r.content


# -- writing -------------------------------------------------------------------------------------
def test_writes_need_the_token(client):
    files = {"image": ("new.jpg", jpeg(50), "image/jpeg")}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        r = client.post("/images", files=files, headers=headers)
        assert r.status_code == 401, headers
        assert client.delete("/images/1", headers=headers).status_code == 401
    assert client.get("/healthz").json()["images"] == 8


def test_add_then_delete_through_the_api(client, index_dir):
    data = jpeg(50)
    r = client.post("/images", files={"image": ("new.jpg", data, "image/jpeg")}, headers=AUTH)
    assert r.status_code == 201
    new = r.json()["id"]
    saved = index_dir / "uploads" / "new.jpg"  # under its own name
    assert saved.read_bytes() == data
    hit = client.get(f"/search?id={new}&k=1").json()["results"][0]
    assert hit["id"] == new and hit["path"] == "uploads/new.jpg"
    again = client.post("/images", files={"image": ("copy.jpg", data, "image/jpeg")}, headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == new  # same content, same image
    assert sorted(p.name for p in (index_dir / "uploads").iterdir()) == ["new.jpg"]
    two = client.post("/images", headers=AUTH, files=[("image", ("a.jpg", jpeg(51), "image/jpeg")),
                                                      ("image", ("b.png", _png(52), "image/png"))])
    assert two.status_code == 201 and len(set(two.json()["ids"])) == 2
    assert client.get("/healthz").json()["images"] == 11
    assert client.delete(f"/images/{new}", headers=AUTH).status_code == 204
    assert client.get(f"/images/{new}").status_code == 404 and not saved.exists()
    assert client.delete(f"/images/{new}", headers=AUTH).status_code == 404
    first = ids_of(client, "img0.jpg")
    assert all(h["id"] != new for h in client.get(f"/search?id={first}&k=20").json()["results"])


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(synthetic_photo(seed)).save(buf, "PNG")
    return buf.getvalue()


def test_upload_limits(client):
    big = b"\xff\xd8" + bytes(300 * 1024)
    for url, headers in (("/search", {}), ("/images", AUTH)):
        r = client.post(url, files={"image": ("big.jpg", big, "image/jpeg")}, headers=headers)
        assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while reading
        for _ in range(40):
            yield bytes(16 * 1024)

    r = client.post("/search", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413


def test_bad_images_are_refused_clearly(client):
    r = client.post("/search", files={"image": ("a.jpg", b"hello, not an image", "image/jpeg")})
    assert r.status_code == 422 and "not a recognised image format" in r.json()["detail"]
    buf = io.BytesIO()
    Image.new("1", (10000, 9000)).save(buf, "PNG")  # 90 Mpixels in a few kB
    assert len(buf.getvalue()) < 200_000
    for url, headers in (("/search", {}), ("/images", AUTH)):
        r = client.post(url, files={"image": ("bomb.png", buf.getvalue(), "image/png")}, headers=headers)
        assert r.status_code == 400 and "decompression bomb" in r.json()["detail"]
    r = client.post("/images", files={"image": ("t.jpg", b"GIF89a broken", "image/gif")}, headers=AUTH)
    assert r.status_code == 422
    assert client.get("/healthz").json()["images"] == 8


def test_cors_only_when_asked(index_dir):
    pre = {"Origin": "http://example.org", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(index_dir, token=TOKEN)) as c:
        assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": "http://example.org"}).headers
        assert "access-control-allow-origin" not in c.options("/search", headers=pre).headers
    with TestClient(create_app(index_dir, token=TOKEN, cors=["http://example.org"])) as c:
        r = c.get("/healthz", headers={"Origin": "http://example.org"})
        assert r.headers["access-control-allow-origin"] == "http://example.org"
        other = c.get("/healthz", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_generated_token_when_none_given(index_dir):
    app = create_app(index_dir)
    assert len(app.state.token) >= 30 and app.state.token != create_app(index_dir).state.token
    with TestClient(app) as c:
        r = c.post("/images", files={"image": ("n.jpg", jpeg(60), "image/jpeg")},
                   headers={"Authorization": f"Bearer {app.state.token}"})
        assert r.status_code == 201


def test_explain_returns_a_png(client):
    a, b = ids_of(client, "img1.jpg"), ids_of(client, "img2.jpg")
    r = client.get(f"/explain?query_id={a}&id={b}")
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/explain?query_id={a}&id=9999").status_code == 404
    assert client.get("/stats").json()["explain"] is True


# -- concurrency ---------------------------------------------------------------------------------
def test_searches_do_not_wait_for_extraction(client, monkeypatch):
    from lookalike.engine import writer as api

    original = api.process_batch

    def slow(*args, **kwargs):
        time.sleep(1.5)
        return original(*args, **kwargs)

    monkeypatch.setattr(api, "process_batch", slow)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=client.post(
        "/images", files={"image": ("s.jpg", jpeg(70), "image/jpeg")}, headers=AUTH)))
    first = ids_of(client, "img0.jpg")
    t.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    r = client.get(f"/search?id={first}&k=5")
    waited = time.perf_counter() - t0
    assert t.is_alive(), "the add finished too early for this test to mean anything"
    assert r.status_code == 200 and len(r.json()["results"]) == 5 and waited < 1.0
    t.join()
    assert out["r"].status_code == 201 and client.get("/healthz").json()["images"] == 9


def test_search_while_adding_never_fails(client):
    errors, done = [], threading.Event()
    first = ids_of(client, "img0.jpg")

    def searcher():
        while not done.is_set():
            r = client.get(f"/search?id={first}&k=5")
            if r.status_code != 200 or r.json()["results"][0]["id"] != first:
                errors.append(r.status_code)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for s in range(100, 110):
            assert client.post("/images", files={"image": (f"{s}.jpg", jpeg(s), "image/jpeg")},
                               headers=AUTH).status_code == 201
    finally:
        done.set()
        for t in threads:
            t.join()
    assert errors == [] and client.get("/healthz").json()["images"] == 18


def test_follows_another_writer(client, index_dir, tmp_path):
    more = tmp_path / "more"
    more.mkdir()
    Image.fromarray(synthetic_photo(80)).save(more / "x80.jpg")
    other = Index(index_dir)  # another writer (its own SQLite connection and lock file handle)
    other.add([more])
    new = other.catalog.by_path(str(more / "x80.jpg")).id
    assert client.get(f"/search?id={new}&k=1").json()["results"][0]["id"] == new
    assert client.get("/healthz").json()["images"] == 9
    assert client.app.state.follower.reloads == 1
    with other.folder.write_lock():  # while the other writer works, API writes answer 409, reads go on
        r = client.post("/images", files={"image": ("y.jpg", jpeg(81), "image/jpeg")}, headers=AUTH)
        assert r.status_code == 409 and "another process" in r.json()["detail"]
        assert client.get(f"/search?id={ids_of(client, 'img0.jpg')}&k=1").status_code == 200
    other.remove([more])
    other.close()
    first = ids_of(client, "img0.jpg")
    assert all(h["id"] != new for h in client.get(f"/search?id={first}&k=20").json()["results"])
    assert client.get("/healthz").json()["images"] == 8


def test_rwlock_readers_share_writers_exclude():
    lock, log = RWLock(), []
    inside = threading.Barrier(2)

    def reader():
        with lock.read():
            inside.wait(timeout=2)  # both readers are inside at once
            with lock.read():  # re-entrant while a writer may be waiting
                time.sleep(0.1)
            log.append("r")

    def writer():
        time.sleep(0.05)
        with lock.write():
            log.append("w")

    ts = [threading.Thread(target=f) for f in (reader, reader, writer)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=5)
    assert log == ["r", "r", "w"] and not any(t.is_alive() for t in ts)


# -- the command -----------------------------------------------------------------------------------
def test_serve_command_defaults_and_token(index_dir, monkeypatch, tmp_path):
    import uvicorn
    from typer.testing import CliRunner

    from lookalike.cli import app

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: seen.update(kw, app=application))
    monkeypatch.setenv("LOOKALIKE_TOKEN", "from-env")
    r = CliRunner().invoke(app, ["serve", "--index", str(index_dir)])
    assert r.exit_code == 0, r.output
    assert (seen["host"], seen["port"], seen["app"].state.token) == ("127.0.0.1", 8000, "from-env")
    assert "from-env" not in r.output
    monkeypatch.delenv("LOOKALIKE_TOKEN")
    r = CliRunner().invoke(app, ["serve", "--index", str(index_dir), "--max-upload-mb", "1"])
    assert seen["app"].state.token in r.output and seen["app"].state.max_bytes == 1024 * 1024
    r = CliRunner().invoke(app, ["serve", "--index", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "no index here" in r.output
    r = CliRunner().invoke(app, ["serve", "--index", str(index_dir), "--show-paths", "absolute"])
    assert r.exit_code == 0 and seen["app"].state.paths.mode == "absolute"
    r = CliRunner().invoke(app, ["serve", "--index", str(index_dir), "--show-paths", "full"])
    assert r.exit_code == 1 and "unknown --show-paths 'full' (known: relative, absolute)" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_database_transforming_pipeline_adds_and_follows(photo_dir, tmp_path):
    idx = lookalike.open(tmp_path / "dba", pipeline="color+dba")
    idx.add([photo_dir])
    idx.close()
    with TestClient(create_app(tmp_path / "dba", token=TOKEN, reload_every=0)) as c:
        r = c.post("/images", files={"image": ("n.jpg", jpeg(90), "image/jpeg")}, headers=AUTH)
        assert r.status_code == 201
        new = r.json()["id"]
        assert c.get(f"/search?id={new}&k=1").json()["results"][0]["id"] == new
        more = tmp_path / "more"
        more.mkdir()
        Image.fromarray(synthetic_photo(91)).save(more / "x.jpg")
        other = Index(tmp_path / "dba")
        other.add([more])
        other_id = other.catalog.by_path(str(more / "x.jpg")).id
        other.close()
        assert c.get(f"/search?id={other_id}&k=1").json()["results"][0]["id"] == other_id
        assert c.get("/healthz").json()["images"] == 10


# -- relative index folders, what is served, what the clients see -------------------------------
def test_serve_a_relative_index_folder(photo_dir, tmp_path, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from lookalike.cli import app

    monkeypatch.chdir(tmp_path)
    idx = lookalike.open("rel", pipeline="color")
    idx.add([photo_dir])
    idx.close()
    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: seen.update(app=application))
    r = CliRunner().invoke(app, ["serve", "--index", "rel", "--token", TOKEN])
    assert r.exit_code == 0, r.output
    data = jpeg(40)
    with TestClient(seen["app"]) as c:
        up = c.post("/images", files={"image": ("rel.jpg", data, "image/jpeg")}, headers=AUTH)
        assert up.status_code == 201, up.text
        new = up.json()["id"]
        row = c.app.state.index.catalog.get(new)
        assert row.path == str(tmp_path / "rel" / "uploads" / "rel.jpg") and row.status == "ok"
        assert c.get(f"/images/{new}").content == data
        assert c.get(f"/search?id={new}&k=1").json()["results"][0]["path"] == "uploads/rel.jpg"
        assert c.delete(f"/images/{new}", headers=AUTH).status_code == 204
        assert not (tmp_path / "rel" / "uploads" / "rel.jpg").exists()


def test_originals_are_served_only_while_they_are_the_indexed_file(client, index_dir, photo_dir, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    img2, img3, img4 = (ids_of(client, f"img{i}.jpg") for i in (2, 3, 4))
    (photo_dir / "img2.jpg").unlink()
    (photo_dir / "img2.jpg").symlink_to(secret)  # the indexed file replaced by a link elsewhere
    r = client.get(f"/images/{img2}")
    assert r.status_code == 404 and b"root:" not in r.content
    assert "not served" in r.json()["detail"] or "no longer" in r.json()["detail"]
    t = client.get(f"/thumbs/{img2}")  # the thumbnail made when it was indexed, not the file there now
    assert t.status_code == 200 and b"root:" not in t.content and Image.open(io.BytesIO(t.content)).size == (160, 120)
    (photo_dir / "img3.jpg").unlink()
    (photo_dir / "img3.jpg").symlink_to(photo_dir / "img5.jpg")  # another image: not the indexed one
    assert client.get(f"/images/{img3}").status_code == 404
    drop_thumbnails(index_dir)  # without stored thumbnails, none is made from the wrong file
    client.app.state.thumbs.store.close()  # its open connections still read the deleted file
    for i in (img2, img3):
        assert client.get(f"/thumbs/{i}").status_code == 404
    os.mkfifo(tmp_path / "fifo")
    (photo_dir / "img4.jpg").rename(tmp_path / "img4.jpg")
    (photo_dir / "img4.jpg").symlink_to(tmp_path / "fifo")  # must not block the server
    assert client.get(f"/images/{img4}").status_code == 404
    (photo_dir / "img4.jpg").unlink()
    (photo_dir / "img4.jpg").write_bytes((tmp_path / "img4.jpg").read_bytes())  # the same bytes again
    r = client.get(f"/images/{img4}")
    assert r.status_code == 200 and r.content == (tmp_path / "img4.jpg").read_bytes()
    assert r.headers["content-type"] == "image/jpeg"


def test_explain_keeps_its_drawings_out_of_the_index_folder(index_dir):
    def files() -> set:
        return {(str(p.relative_to(index_dir)), p.stat().st_size) for p in index_dir.rglob("*") if p.is_file()}

    with TestClient(create_app(index_dir, token=TOKEN, explain_cache_mb=0.05)) as c:
        ids = [ids_of(c, f"img{i}.jpg") for i in range(4)]
        before = files()
        pngs = {}
        for a in ids:
            for b in ids:
                if a != b:
                    r = c.get(f"/explain?query_id={a}&id={b}")
                    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
                    pngs[a, b] = r.content
        assert files() == before  # nothing written into the index folder
        cache = c.app.state.drawings
        assert 0 < cache.bytes <= 0.05 * 1024 * 1024 and len(cache) < len(pngs)  # bounded in bytes
        a, b = ids[0], ids[1]
        assert c.get(f"/explain?query_id={a}&id={b}").content == pngs[a, b]


def test_paths_are_shown_relative_to_the_indexed_folder(index_dir, photo_dir):
    with TestClient(create_app(index_dir, token=TOKEN, reload_every=0)) as c:
        up = c.post("/images", files={"image": ("new one.jpg", jpeg(41), "image/jpeg")}, headers=AUTH)
        assert up.status_code == 201
        items = c.get("/images?limit=100")
        paths = {it["path"] for it in items.json()["items"]}
        assert paths == {f"img{i}.jpg" for i in range(7)} | {"sub/img7.jpg", "uploads/new_one.jpg"}
        found = c.post("/search?k=3", files={"image": ("q.jpg", (photo_dir / "img3.jpg").read_bytes(), "image/jpeg")})
        assert found.json()["results"][0]["path"] == "img3.jpg"
        by_id = c.get(f"/search?id={ids_of(c, 'img7.jpg')}&k=2")
        stats = c.get("/stats")
        assert stats.json()["skipped"] == [{"path": "broken.jpg", "reason": "not a recognised image format"}]
        for r in (items, found, by_id, stats):
            assert str(photo_dir.parent) not in r.text and '"/' not in r.text.replace('"/thumbs/', '')
    with TestClient(create_app(index_dir, token=TOKEN, show_paths="absolute")) as c:
        paths = {it["path"] for it in c.get("/images?limit=100").json()["items"]}
        assert str(photo_dir / "sub" / "img7.jpg") in paths and str(index_dir / "uploads" / "new_one.jpg") in paths
        assert c.get("/stats").json()["skipped"][0]["path"] == str(photo_dir / "broken.jpg")
    with pytest.raises(ValueError, match="unknown --show-paths 'full'"):
        create_app(index_dir, show_paths="full")


def test_healthz_alone_follows_another_writer(index_dir, tmp_path):
    with TestClient(create_app(index_dir, token=TOKEN, reload_every=0.2)) as c:
        assert c.get("/healthz").json()["images"] == 8
        more = tmp_path / "more"
        more.mkdir()
        for s in (82, 83):
            Image.fromarray(synthetic_photo(s)).save(more / f"x{s}.jpg")
        with Index(index_dir) as other:
            other.add([more])
        deadline, count = time.monotonic() + 10, None
        while time.monotonic() < deadline and count != 10:
            time.sleep(0.1)
            count = c.get("/healthz").json()["images"]  # no other request in between
        assert count == 10


# -- uploads ---------------------------------------------------------------------------------------
def test_uploads_keep_their_names_safely_and_uniquely(client, index_dir):
    def add(name: str, data: bytes) -> dict:
        r = client.post("/images", files={"image": (name, data, "image/jpeg")}, headers=AUTH)
        assert r.status_code == 201, r.text
        return r.json()

    add("Holiday photo (1).JPG", jpeg(200))
    add("../../../etc/evil.jpg", jpeg(201))
    add("C:\\Users\\me\\evil.jpg", jpeg(202))  # the name is taken: a number is added
    add(".hidden.jpg", jpeg(203))
    add("no name", jpeg(204))
    png = add("looks-like.jpg", _png(205))  # the suffix follows the content
    assert sorted(p.name for p in (index_dir / "uploads").iterdir()) == [
        "Holiday_photo_1.jpg", "evil-2.jpg", "evil.jpg", "hidden.jpg", "looks-like.png", "no_name.jpg"]
    assert client.get(f"/images/{png['id']}").headers["content-type"] == "image/png"
    assert not (index_dir.parent / "etc").exists()


def test_upload_of_indexed_content_answers_the_existing_image(client, index_dir, photo_dir):
    known = ids_of(client, "img3.jpg")
    data = (photo_dir / "img3.jpg").read_bytes()
    r = client.post("/images", files={"image": ("renamed.jpg", data, "image/jpeg")}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"id": known, "ids": [known], "added": 0}
    both = client.post("/images", headers=AUTH, files=[("image", ("a.jpg", data, "image/jpeg")),
                                                       ("image", ("n.jpg", jpeg(210), "image/jpeg")),
                                                       ("image", ("n2.jpg", jpeg(210), "image/jpeg"))])
    body = both.json()
    assert both.status_code == 201 and body["ids"][0] == known and body["ids"][1] == body["ids"][2]
    assert body["added"] == 1 and client.get("/healthz").json()["images"] == 9
    assert sorted(p.name for p in (index_dir / "uploads").iterdir()) == ["n.jpg"]


def test_rejected_uploads_leave_nothing_behind(client, index_dir, monkeypatch):
    from lookalike.engine import runners, writer

    def uploads() -> list:
        return sorted(p.name for p in (index_dir / "uploads").iterdir()) if (index_dir / "uploads").exists() else []

    # a bad second upload: the first one is not kept either
    r = client.post("/images", headers=AUTH, files=[("image", ("good.jpg", jpeg(220), "image/jpeg")),
                                                    ("image", ("bad.jpg", b"not an image", "image/jpeg"))])
    assert r.status_code == 422 and "bad.jpg" in r.json()["detail"] and uploads() == []
    # an upload the indexer refuses (after the check): neither kept nor recorded as skipped
    original = writer.process_batch

    def refusing(*args, **kwargs):
        return [runners.Result(res.path, res.size, res.mtime, res.digest, error="corrupt image data")
                if "refused" in res.path else res for res in original(*args, **kwargs)]

    monkeypatch.setattr(writer, "process_batch", refusing)
    r = client.post("/images", headers=AUTH, files=[("image", ("fine.jpg", jpeg(221), "image/jpeg")),
                                                    ("image", ("refused.jpg", jpeg(222), "image/jpeg"))])
    detail = r.json()["detail"]
    assert r.status_code == 422 and "refused.jpg" in detail and "corrupt image data" in detail, detail
    assert "\n" not in detail and str(index_dir) not in detail
    assert uploads() == [] and client.get("/healthz").json()["images"] == 8
    assert [s["path"] for s in client.get("/stats").json()["skipped"]] == ["broken.jpg"]
    monkeypatch.setattr(writer, "process_batch", original)
    # another process holds the write lock: 409, and the upload is not left in the folder
    with Index(index_dir) as other, other.folder.write_lock():
        r = client.post("/images", files={"image": ("busy.jpg", jpeg(223), "image/jpeg")}, headers=AUTH)
        assert r.status_code == 409 and str(index_dir) not in r.json()["detail"]
    assert uploads() == []
    assert client.post("/images", files={"image": ("fine.jpg", jpeg(221), "image/jpeg")},
                       headers=AUTH).status_code == 201
    assert uploads() == ["fine.jpg"]


def test_min_score_on_both_searches(client):
    i = ids_of(client, "img3.jpg")
    got = client.get(f"/search?id={i}&k=8&min_score=0.99").json()["results"]
    assert [r["id"] for r in got] == [i]
    data = client.get(f"/images/{i}").content
    up = client.post("/search?k=8&min_score=0.99", files={"image": ("q.jpg", data, "image/jpeg")}).json()["results"]
    assert [r["id"] for r in up] == [i]
