"""TextIndex: keyword (English words, Chinese words and phrases), tags, removal, zero-shot,
vectors, fusion and the readable score scale, with a small bag-of-words encoder standing in for
MiniLM (the multilingual USE encoder is the installed one)."""
from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from lookalike.text.classes import class_names
from lookalike.text.fusion import fuse, standardise
from lookalike.text.sources import TextEntry
from lookalike.text.store import TextIndex


class BowEncoder:
    """Hashed bag of words: texts sharing words get a positive cosine."""

    name, dim = "test-bow", 256

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                if w not in ("a", "of", "photo"):
                    out[i, zlib.crc32(w.encode()) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@pytest.fixture
def ti(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    t = TextIndex(tmp_path / "t.sqlite", encoder=BowEncoder())
    t.add(1, [TextEntry("caption", "A brown dog runs along the beach"), TextEntry("filename", "holiday 2019")])
    t.add(2, [TextEntry("meta", "Red fox in snowy woods")])
    t.add(3, [TextEntry("caption", "一只猫在沙发上睡觉")])
    t.add(4, [TextEntry("ocr", "GRAND HOTEL")])
    return t


def top(t: TextIndex, query: str, **kw) -> int:
    return int(t.search(query, 1, **kw)[1][0])


def test_keyword_finds_each_source(ti):
    assert top(ti, "fox", methods=("keyword",)) == 2
    assert top(ti, "dogs", methods=("keyword",)) == 1  # porter stemming
    assert top(ti, "hotel", methods=("keyword",)) == 4
    assert top(ti, "沙发上", methods=("keyword",)) == 3  # trigram
    assert top(ti, "猫", methods=("keyword",)) == 3  # one CJK character: a jieba word of the caption
    assert top(ti, "那只猫睡得很香", methods=("keyword",)) == 3  # words of a sentence: 猫, 睡
    assert ti.keyword_scores("狗").max() == 0  # no caption holds the word
    s = ti.keyword_scores("fox")
    assert (s > 0).sum() == 1


def test_user_tags_and_removal(ti):
    assert ti.add_tag(2, "birthday party")
    assert not ti.add_tag(2, "birthday party")
    assert top(ti, "birthday", methods=("keyword",)) == 2
    assert ti.tags(2) == ["birthday party"]
    assert ti.remove_tag(2, "birthday party")
    assert ti.keyword_scores("birthday").max() == 0
    ti.remove([3])
    assert 3 not in ti.image_ids()
    assert ti.keyword_scores("猫").max() == 0


def test_semantic_score_over_texts(ti):
    ids, S = ti.score(["snowy fox"], methods=("semantic",))
    assert ids[np.argmax(S[0])] == 2


def test_zero_shot_and_chinese_query(ti):
    names = class_names()
    cat, car = names.index("tabby cat"), names.index("sports car")
    logits = np.zeros((2, 1000), np.float32)
    logits[0, cat], logits[1, car] = 12.0, 12.0
    ti.set_classes([10, 11], logits)
    assert top(ti, "sports car", methods=("zeroshot",)) == 11
    assert top(ti, "cat", methods=("zeroshot",)) == 10
    assert top(ti, "猫", methods=("zeroshot",)) == 10  # multilingual encoder
    assert top(ti, "一辆跑车", methods=("zeroshot",)) == 11
    assert [e.text for e in ti.entries(10)][0] == "tabby cat"  # automatic tag, weight = probability
    assert ti.entries(10)[0].weight > 0.9


def test_vectors_and_hybrid(ti):
    v = np.eye(BowEncoder.dim, dtype=np.float32)[:2] * 3.0
    ti.set_vectors("clip", [1, 2], v)
    ids, S = ti.score(["x"], methods=("clip",), query_vectors={"clip": v[1:2]})
    assert ids[np.argmax(S[0])] == 2
    # hybrid: an exact keyword hit wins over a weaker semantic neighbour
    assert top(ti, "hotel") == 4


def test_fusion_rules():
    z = standardise(np.array([[1.0, 2.0, 3.0, 0.0]]), np.array([True, True, True, False]))
    assert np.allclose(z[0, :3], [-1.2247, 0, 1.2247], atol=1e-3) and z[0, 3] == z[0, 0]
    f = fuse({"keyword": (np.array([[0.0, 4.0, 2.0]]), None)}, {"keyword": 2.0})
    assert np.allclose(f, [[0.0, 2.0, 1.0]])


def test_chinese_query_finds_chinese_caption_tag_and_ocr(ti):
    ti.add(5, [TextEntry("ocr", "欢迎光临 北京饭店")])
    ti.add_tag(6, "生日聚会")
    ti.add(7, [TextEntry("caption", "两个孩子在公园里放风筝")])
    assert top(ti, "饭店", methods=("keyword",)) == 5  # OCR word
    assert top(ti, "聚会", methods=("keyword",)) == 6  # tag word
    assert top(ti, "放风筝的孩子", methods=("keyword",)) == 7  # caption words, not the exact phrase
    assert top(ti, "风筝") == 7  # hybrid (keyword + semantic + ...)
    # across languages in the multilingual space: an English query finds the Chinese caption
    q = "children flying a kite in the park"
    ids, S = ti.score([q], methods=("semantic",), query_vectors={"use": ti.encoder_for("use").encode([q])})
    assert ids[np.argmax(S[0])] == 7


def test_readable_scores_and_min_score(ti):
    from lookalike.text.scale import NO_MATCH

    s, ids = ti.search("hotel", 3)
    assert ids[0] == 4 and s[0] >= 0.8 and np.all(np.diff(s) <= 0) and np.all((s >= 0) & (s <= 1))
    s, _ = ti.search("zzzqqq", 3)
    assert s.max() < NO_MATCH
    s, ids = ti.search("hotel", 5, min_score=0.5)
    assert list(ids) == [4]
    assert len(ti.search("zzzqqq", 5, min_score=NO_MATCH)[1]) == 0


def test_entry_embeddings_are_stored_once(ti):
    assert ti.embed_missing() == 10  # caption, filename, meta, caption, ocr (semantic sources), in 2 spaces
    assert ti.embed_missing() == 0
    n = ti.db.execute("SELECT count(*) FROM text_entry_emb WHERE space='use'").fetchone()[0]
    assert n == 5
    assert ti.db.execute("SELECT count(*) FROM text_entries WHERE emb IS NOT NULL").fetchone()[0] == 5
