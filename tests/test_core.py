"""The core's promises: derived state follows every write, searches never write, indexes written by
version 0.2 open through a migration and answer as they did."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import lookalike
from conftest import synthetic_photo
from lookalike.cli import app
from lookalike.engine.index import Index
from lookalike.engine.migrations import SCHEMA_VERSION

DATA = Path(__file__).parent / "data"


def scenes(root: Path, first: int, n: int) -> list[Path]:
    """``n`` scenes from ``first``: each a photo and a cropped, brightened copy (partners for the steps)."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(first, first + n):
        img = synthetic_photo(i)
        for j, im in enumerate((img, np.clip(img[6:-6, 8:] * 0.9 + 14, 0, 255).astype(np.uint8))):
            p = root / f"s{i}-{j}.jpg"
            Image.fromarray(np.ascontiguousarray(im)).save(p, quality=90)
            out.append(p)
    return out


def ranked(idx: Index, queries: list[Path], k: int = 12) -> list[list[tuple[str, float]]]:
    return [[(Path(h.path).name, h.score) for h in idx.search(q, k=k).hits] for q in queries]


def assert_same_rankings(got, want) -> None:
    for g, w in zip(got, want):
        assert [n for n, _ in g] == [n for n, _ in w]
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def vocabulary_images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("vocab")
    scenes(d, 40, 6)
    return d


# Every re-rank step and the bag-of-words pipeline: what the writer keeps (graphs, DBA vectors,
# local features, inverted file) after add -> remove -> add equals a fresh build of the same images.
SPECS = ["color+aqe", "color+dba", "color+krnn", "color+diffusion", "color+sv", "color+dba+aqe", "sift-bow"]


@pytest.mark.parametrize("spec", SPECS)
def test_add_remove_add_equals_a_fresh_build(spec, tmp_path, vocabulary_images):
    if spec == "sift-bow":  # one vocabulary for both indexes (learned on other images)
        spec = f"sift-bow(words=64,fit_on={vocabulary_images})"
    photos = tmp_path / "photos"
    first = scenes(photos, 0, 6)
    idx = lookalike.open(tmp_path / "grown", pipeline=spec)
    idx.add(first)
    queries = [first[0], first[5], first[8]]
    ranked(idx, queries)  # a search between writes must not matter
    idx.remove([first[2], first[3], first[9]])
    more = scenes(photos, 6, 4)
    idx.add(more + [first[9]])  # one removed image comes back
    now = [p for p in first + more if p not in (first[2], first[3])]
    got = ranked(idx, queries + [more[1]])
    fresh = lookalike.open(tmp_path / "fresh", pipeline=spec)
    fresh.add(now)
    want = ranked(fresh, queries + [more[1]])
    assert_same_rankings(got, want)
    assert sorted(Path(h.path).name for h in idx.search(first[0], k=50).hits) == sorted(p.name for p in now)
    idx.close()
    again = Index(tmp_path / "grown", readonly=True)  # the saved derived state, read back
    assert_same_rankings(ranked(again, queries + [more[1]]), want)
    again.close()
    fresh.close()


def test_removing_alone_keeps_graph_steps_working(tmp_path):
    """A remove in a long-lived index with a kNN graph used to break every later search."""
    photos = scenes(tmp_path / "p", 0, 5)
    idx = lookalike.open(tmp_path / "i", pipeline="color+diffusion")
    idx.add(photos)
    assert idx.search(photos[0], k=3).hits
    idx.remove(photos[1])
    hits = idx.search(photos[0], k=20).hits
    assert len(hits) == len(photos) - 1 and hits[0].path == str(photos[0])
    graph = idx.pipeline.steps[0].graph
    assert len(graph) == len(idx.store) and idx.folder.read_stamp()["generation"] == idx.generation
    idx.close()


def folder_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (SQLite's -wal and -shm files included) with its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_searches_of_every_kind_leave_the_folder_byte_identical(tmp_path):
    photos = scenes(tmp_path / "photos", 0, 5)
    (tmp_path / "photos" / "s0-0.jpg.txt").write_text("a red kayak on a lake", encoding="utf-8")
    built = lookalike.open(tmp_path / "idx", pipeline="text")  # GeM and text search
    built.add(photos)
    built.close()
    before = folder_digest(tmp_path / "idx")
    idx = lookalike.open(tmp_path / "idx", readonly=True)
    q = photos[3]
    assert idx.search(q, k=3).hits[0].path == str(q)
    assert idx.search(q, k=3, rerank="diffusion").hits[0].path == str(q)
    assert idx.search(q, k=3, rerank="dba+aqe(alpha=3)").hits
    assert idx.search(q, k=3, rotate=True).hits[0].path == str(q)
    assert idx.search(q, k=3, rerank="sv").hits[0].path == str(q)  # verified without stored features
    assert idx.search(q, k=3, box=(10, 10, 60, 50)).hits
    assert idx.search(id=idx.search(q, k=1).hits[0].id, k=3).hits
    assert idx.search(text="kayak", k=1).hits[0].path.endswith("s0-0.jpg")
    idx.close()
    runner = CliRunner()
    for args in (["search", str(q)], ["search", str(q), "--verify"], ["search", str(q), "--rotate"],
                 ["search", "--text", "kayak"], ["search", str(q), "--rerank", "krnn"], ["info"]):
        r = runner.invoke(app, [*args, "--index", str(tmp_path / "idx"), "--json"])
        assert r.exit_code == 0, r.output
    assert folder_digest(tmp_path / "idx") == before


def test_a_verified_search_does_not_write_while_another_process_writes(tmp_path):
    photos = scenes(tmp_path / "photos", 0, 3)
    idx = lookalike.open(tmp_path / "idx", pipeline="color")
    idx.add(photos)
    idx.close()
    from lookalike.engine.folder import IndexFolder

    with IndexFolder(tmp_path / "idx").write_lock():  # another writer holds the index
        before = folder_digest(tmp_path / "idx")
        r = CliRunner().invoke(app, ["search", str(photos[0]), "--verify", "--index", str(tmp_path / "idx")])
        assert r.exit_code == 0, r.output
        assert folder_digest(tmp_path / "idx") == before
    assert not (tmp_path / "idx" / "local_features.sqlite").exists()


# -- indexes written by version 0.2 ---------------------------------------------------------------
EXPECTED = json.loads((DATA / "index-0.2" / "expected.json").read_text())


def _queries() -> dict[str, np.ndarray]:
    sys.path.insert(0, str(DATA))
    from make_index_0_2 import queries

    return queries()


@pytest.mark.parametrize("spec", sorted(EXPECTED))
def test_an_index_written_by_0_2_opens_and_answers_the_same(spec, tmp_path):
    folder = tmp_path / spec
    shutil.copytree(DATA / "index-0.2" / spec, folder)
    want = EXPECTED[spec]
    before = folder_digest(folder)
    ro = Index(folder, readonly=True)  # read in memory: nothing written
    assert ro.info()["schema_version"] == 1
    for name, q in _queries().items():
        got = [[h.id, h.score] for h in ro.search(q, k=8).hits]
        assert [i for i, _ in got] == [i for i, _ in want[name]], name
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want[name]], rtol=1e-5, atol=1e-6)
    ro.close()
    assert folder_digest(folder) == before
    idx = Index(folder)  # a writable open migrates
    assert idx.info()["schema_version"] == SCHEMA_VERSION and idx.spec == spec
    assert idx.catalog.get_setting("pipeline") is None and idx.catalog.get_setting("document")["base"]["name"]
    assert not (folder / "local_features.sqlite").exists()
    for name, q in _queries().items():
        got = [[h.id, h.score] for h in idx.search(q, k=8).hits]
        assert [i for i, _ in got] == [i for i, _ in want[name]], name
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want[name]], rtol=1e-5, atol=1e-6)
    idx.close()


# -- pipelines as data ---------------------------------------------------------------------------
def test_spec_strings_expand_to_documents_with_parameters():
    from lookalike.errors import BadInputError, NotFoundError
    from lookalike.pipelines import build, expand, parse_spec

    doc = parse_spec("color(compare=chi2)+aqe(alpha=3, n=5)+dba:n=4")
    assert doc.base == "color" and doc.options == {"compare": "chi2"}
    assert [(s.name, s.params) for s in doc.steps] == [("aqe", {"alpha": 3, "n": 5}), ("dba", {"n": 4})]
    pipe = build(doc)
    assert pipe.steps[0].params["alpha"] == 3 and pipe.steps[0].params["min_sim"] == 0.7  # defaults fill in
    assert pipe.extractor.compare == "chi2"
    again = parse_spec(pipe.document.to_spec())
    assert again.steps[1].params == pipe.steps[1].params
    full = expand("default+aqe(alpha=3)")
    assert full["schema"] == 2 and full["steps"][0]["params"]["alpha"] == 3 and full["extractor"]["extractor"] == "fusion"
    with pytest.raises(BadInputError, match="unknown parameters"):
        build("color+aqe(alpah=3)")
    with pytest.raises(NotFoundError, match="unknown pipeline 'nosuch'"):
        build("nosuch")
    with pytest.raises(BadInputError):
        parse_spec("color+aqe(alpha=3")


def test_cli_pipelines_json_prints_the_document():
    r = CliRunner().invoke(app, ["pipelines", "gem+diffusion(k=10)", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["base"]["name"] == "gem" and doc["steps"] == [
        {"name": "diffusion", "params": {**__import__("lookalike.rerank.diffusion", fromlist=["x"]).Diffusion.defaults(),
                                         "k": 10}}]


def test_a_bad_pipeline_creates_nothing(tmp_path):
    photos = scenes(tmp_path / "p", 0, 1)
    r = CliRunner().invoke(app, ["index", str(photos[0]), "--index", str(tmp_path / "new"), "-p", "nosuch"])
    assert r.exit_code == 1 and "unknown pipeline 'nosuch'" in r.output and not (tmp_path / "new").exists()
    r = CliRunner().invoke(app, ["index", str(tmp_path / "missing"), "--index", str(tmp_path / "new2")])
    assert r.exit_code == 1 and "path not found" in r.output and not (tmp_path / "new2").exists()


# -- errors as types -----------------------------------------------------------------------------
def test_cli_maps_only_lookalike_errors_to_messages(tmp_path, monkeypatch):
    photos = scenes(tmp_path / "p", 0, 2)
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(tmp_path / "p"), "--index", str(tmp_path / "i"), "-p", "color",
                               "--quiet"]).exit_code == 0
    r = runner.invoke(app, ["search", str(photos[0]), "--index", str(tmp_path / "i"), "-k", "2", "--json",
                            "--rerank", "nosuch"])
    assert r.exit_code == 1 and json.loads(r.stderr)["error"].startswith("unknown re-ranker 'nosuch'")
    from lookalike.engine import searcher

    def broken(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(searcher.Searcher, "search", broken)
    r = runner.invoke(app, ["search", str(photos[0]), "--index", str(tmp_path / "i")])
    assert r.exit_code == 2 and "internal error: ZeroDivisionError: a bug" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_second_writer_gets_one_line_that_says_what_to_do(tmp_path):
    photos = scenes(tmp_path / "p", 0, 1)
    idx = lookalike.open(tmp_path / "i", pipeline="color")
    idx.add(photos)
    with idx.folder.write_lock():
        r = CliRunner().invoke(app, ["remove", str(photos[0]), "--index", str(tmp_path / "i")])
    assert r.exit_code == 1 and "being written by another process" in r.stderr and "wait" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2
    idx.close()


# -- the Python API takes one path as one path ----------------------------------------------------
def test_a_string_is_one_path_in_add_and_remove(tmp_path):
    photos = scenes(tmp_path / "p", 0, 2)
    idx = lookalike.open(tmp_path / "i", pipeline="color")
    assert idx.add(str(tmp_path / "p")).added == 4
    assert idx.remove(str(photos[0])) == 1 and len(idx) == 3
    assert idx.remove(photos[1]) == 1 and len(idx) == 2
    idx.close()


def test_content_already_described_is_reused(tmp_path):
    photos = scenes(tmp_path / "p", 0, 2)
    shutil.copy(photos[0], tmp_path / "p" / "copy.jpg")
    idx = lookalike.open(tmp_path / "i", pipeline="color")
    idx.add(photos)
    rep = idx.add(tmp_path / "p" / "copy.jpg")
    assert rep.added == 1 and rep.reused == 1
    a, b = (idx.catalog.vectors([idx.catalog.by_path(str(p)).id]) for p in (photos[0], tmp_path / "p" / "copy.jpg"))
    np.testing.assert_array_equal(next(iter(a.values())), next(iter(b.values())))
    idx.close()


# -- extending: one module and its registration ----------------------------------------------------
def test_a_new_aggregation_reranker_and_store_plug_in_by_registration(monkeypatch):
    from lookalike.features.aggregators import AGGREGATORS
    from lookalike.pipelines import build, pipelines
    from lookalike.rerank.base import RERANKERS, Reranker
    from lookalike.store.factory import STORES, make_store
    from lookalike.store.flat import FlatStore
    from lookalike.rerank import load

    load()  # the built-in steps registered before the registry is copied
    monkeypatch.setattr(AGGREGATORS, "_items", dict(AGGREGATORS._items))
    monkeypatch.setattr(RERANKERS, "_items", dict(RERANKERS._items))
    monkeypatch.setattr(STORES, "_items", dict(STORES._items))

    @AGGREGATORS.register("halfmean")
    def halfmean(fmap, ctx=None):
        return fmap.mean(axis=(2, 3)) / 2

    @RERANKERS.register("reverse")
    class Reverse(Reranker):
        """Reverses the ranking (a test step)."""

        name = "reverse"

        def rerank(self, query, scores, ids, store, context=None):
            return -scores[:, ::-1], ids[:, ::-1]

    STORES.add("exact2", lambda dim, metric, n, params: FlatStore(dim, metric))
    pipelines.cache_clear()
    try:
        pipe = build("halfmean+reverse")
        assert pipe.extractor.aggregator == "halfmean" and pipe.steps[0].name == "reverse"
        assert isinstance(make_store("exact2", 4), FlatStore)
    finally:
        pipelines.cache_clear()


def test_eval_describes_with_the_options_a_spec_carries(tmp_path, monkeypatch):
    """``lookalike eval -p 'gem(p=1)'`` describes with p=1 (the spec's own options reach the workers)."""
    from lookalike.eval import runner

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    db = []
    for i in range(3):
        Image.fromarray(synthetic_photo(200 + i)).save(root / "images" / f"{i}.jpg")
        db.append({"id": str(i), "file": f"{i}.jpg"})
    queries = [{"image": f"images/{i}.jpg", "relevant": [], "junk": [str(i)]} for i in range(3)]
    (root / "gt.json").write_text(json.dumps({"format": "lookalike-benchmark/1", "name": "tiny3", "task": "image",
                                              "db_dir": "images", "db": db, "queries": queries}))
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    import os

    models = Path(os.path.expanduser("~/.cache/lookalike/models"))
    if models.exists():  # reuse the exported backbones
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "models").symlink_to(models)
    keys = []
    original = runner.process_batch

    def spy(key, *args, **kwargs):
        keys.append(json.loads(key))
        return original(key, *args, **kwargs)

    monkeypatch.setattr(runner, "process_batch", spy)
    runner.evaluate(root, "gem(p=1)+aqe")
    assert keys and all(k["base"] == {"name": "gem", "options": {"p": 1}} for k in keys)


@pytest.mark.parametrize("spec", ["color+dba", "color+diffusion", "color"])
def test_a_run_killed_before_it_saved_reopens_repaired(spec, tmp_path, monkeypatch):
    """The catalog committed a batch but the store and the steps' state were never saved (a kill):
    the next open sees the stale stamp and repairs, ranking as a fresh build does."""
    from lookalike.engine.stores import StoreManager

    photos = scenes(tmp_path / "photos", 0, 6)
    idx = lookalike.open(tmp_path / "idx", pipeline=spec)
    idx.add(photos[:6])
    idx.close()

    def killed(self, store):
        raise KeyboardInterrupt  # the process dies where it would have saved

    monkeypatch.setattr(StoreManager, "save", killed)
    idx = lookalike.open(tmp_path / "idx")
    with pytest.raises(KeyboardInterrupt):
        idx.add(photos[6:])
    with pytest.raises(KeyboardInterrupt):
        idx.remove(photos[1])
    idx.close()
    monkeypatch.undo()
    again = Index(tmp_path / "idx", readonly=True)
    fresh = lookalike.open(tmp_path / "fresh", pipeline=spec)
    fresh.add([p for p in photos if p != photos[1]])
    queries = [photos[0], photos[7], photos[10]]
    assert_same_rankings(ranked(again, queries), ranked(fresh, queries))
    again.close()
    fresh.close()
