"""What keeps a text query fast: the USE vocabulary looked up in place (no 250,000-entry table
to load for a few queries), and a text search that loads neither FAISS nor the vector store nor
the local-feature family."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.text import encoder as enc

SRC = Path(__file__).resolve().parents[1] / "src"
TEXTS = ["一只狗在草地上奔跑", "a dog running on the grass", "zzzqqq", "鑫龘齉", "Ünïcödé café ☕ 123",
         "穿着红色衣服的女人 and a man", "Привет мир", "日本語のテキスト", "  spaces   inside  "]


@pytest.fixture(scope="module")
def use_pair(tmp_path_factory):
    """(an encoder loaded from the package, one loaded from the cache files it saved)."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("LOOKALIKE_CACHE")
    os.environ["LOOKALIKE_CACHE"] = str(cache)
    try:
        first = enc.MultilingualEncoder()
        second = enc.MultilingualEncoder()
    finally:
        if old is None:
            os.environ.pop("LOOKALIKE_CACHE")
        else:
            os.environ["LOOKALIKE_CACHE"] = old
    return first, second


def test_vocabulary_lookup_answers_as_the_tokenizer_table(use_pair):
    first, second = use_pair
    table = first._use._tokenizer._prefixes
    lookup = second._use._tokenizer._prefixes
    assert isinstance(table, dict) and isinstance(lookup, enc.SortedPieces)
    rng = np.random.default_rng(0)
    keys = list(table)
    probes = [keys[i] for i in rng.choice(len(keys), 3000, replace=False)]
    probes += [k + "\x01" for k in probes[:200]] + [k[:-1] + "☃" for k in probes[:200] if len(k) > 1]
    normalized = [first._use._tokenizer._normalizer.normalize(t) for t in TEXTS]
    probes += [s[i:j] for s in normalized for i in range(len(s)) for j in range(i + 1, min(len(s), i + 20) + 1)]
    assert [lookup.get(p) for p in probes] == [table.get(p) for p in probes]


def test_few_and_many_texts_encode_alike(use_pair):
    first, second = use_pair
    few = second.encode(TEXTS[:3])  # looked up in place
    assert isinstance(second._use._tokenizer._prefixes, enc.SortedPieces)
    many = second.encode(TEXTS * 2)  # bulk: the full table is loaded
    assert isinstance(second._use._tokenizer._prefixes, dict)
    np.testing.assert_allclose(few, many[:3], atol=1e-5)
    np.testing.assert_allclose(first.encode(TEXTS), many[:len(TEXTS)], atol=1e-5)


def test_text_search_loads_no_vector_store(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for name in ("dog.jpg", "cat.jpg"):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(photos / name)
    (photos / "dog.txt").write_text("一只狗在草地上奔跑", encoding="utf-8")
    idx = lookalike.open(tmp_path / "idx", pipeline="text")
    assert idx.add(photos).added == 2
    idx.close()
    code = ("import sys, json, lookalike\n"
            f"idx = lookalike.open({str(tmp_path / 'idx')!r}, readonly=True)\n"
            "hits = idx.search(text='狗', k=1).hits\n"
            "loaded = {m: m in sys.modules for m in ('faiss', 'cv2', 'torch', 'lookalike.pipelines.local')}\n"
            "print(json.dumps({'top': hits[0].path, 'loaded': loaded, 'store_opened': idx._store is not None,"
            " 'images': len(idx)}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["top"] == str(photos / "dog.jpg")
    assert res["loaded"] == {"faiss": False, "cv2": False, "torch": False, "lookalike.pipelines.local": False}
    assert res["store_opened"] is False  # evaluated before len(idx), which opens it
    assert res["images"] == 2


def test_packed_classes_match_the_class_rows(tmp_path):
    """Each image's classes are also kept packed in one row (read in one go by a new process);
    they give the same class matrix as the per-class rows, after copies and removals too."""
    from lookalike.text.store import CLASSES_KIND, TextIndex

    ti = TextIndex(tmp_path / "t.sqlite")
    logits = np.random.default_rng(2).normal(size=(5, 1000)).astype(np.float32) * 4
    ti.set_classes([1, 2, 3, 4, 5], logits)
    ti.copy_classes(2, 6)
    ti.remove([3])
    ids = ti.image_ids()
    assert list(ids) == [1, 2, 4, 5, 6]
    packed = ti.class_matrix(ids)
    ti.db.execute("DELETE FROM text_vectors WHERE kind=?", (CLASSES_KIND,))
    fresh = TextIndex(ti.db)
    rows = fresh.class_matrix(ids)
    np.testing.assert_allclose(packed, rows, atol=1e-6)
    assert (packed > 0).sum(axis=1).tolist() == [20] * 5
    np.testing.assert_allclose(packed[ids.tolist().index(6)], packed[ids.tolist().index(2)])
