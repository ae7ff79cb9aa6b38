"""The copy benchmark's ground truth (``bench/dup_bench.py``)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import dup_bench  # noqa: E402


def test_a_photo_the_dataset_holds_twice_is_one_family_with_its_copies(tmp_path: Path) -> None:
    """Holidays holds scene 1031 twice, as 1039 (two files byte for byte, one re-encoded): grouping
    a copy of one with the other is right, and the benchmark must not count it as a false pair."""
    (tmp_path / "103101.jpg").write_bytes(b"same photo")
    (tmp_path / "103901.jpg").write_bytes(b"same photo")
    (tmp_path / "103902.jpg").write_bytes(b"another shot")
    (tmp_path / "103100.jpg").write_bytes(b"a photo")
    (tmp_path / "103900.jpg").write_bytes(b"the photo, re-encoded")
    labels = {
        "103100.jpg": {"family": "copy-103100", "kind": "original", "strength": "-", "scene": 1031},
        "103900.jpg": {"family": "copy-103900", "kind": "original", "strength": "-", "scene": 1039},
        "103900_turn_90.jpg": {"family": "copy-103900", "kind": "turn", "strength": "90", "scene": 1039},
        "103101.jpg": {"family": "copy-103101", "kind": "original", "strength": "-", "scene": 1031},
        "103101_resize_1of2.jpg": {"family": "copy-103101", "kind": "resize", "strength": "1/2", "scene": 1031},
        "103901.jpg": {"family": "copy-103901", "kind": "original", "strength": "-", "scene": 1039},
        "103901_mirror_-.jpg": {"family": "copy-103901", "kind": "mirror", "strength": "-", "scene": 1039},
        "103902.jpg": {"family": "shot-103902", "kind": "original", "strength": "-", "scene": 1039},
    }
    joined = dup_bench.same_content_families(labels, tmp_path)
    assert {joined[f]["family"] for f in ("103101.jpg", "103101_resize_1of2.jpg", "103901.jpg",
                                          "103901_mirror_-.jpg")} == {"copy-103101"}
    assert joined["103902.jpg"]["family"] == "shot-103902"  # its listed twin is not in this set
    assert {joined[f]["family"] for f in ("103100.jpg", "103900.jpg", "103900_turn_90.jpg")} == {"copy-103100"}
    pred = {("103101_resize_1of2.jpg", "103901_mirror_-.jpg"), ("103901.jpg", "103101.jpg")}
    scored = dup_bench.score_pairs(pred, joined)["overall"]
    assert scored["precision"] == 1.0 and scored["false_other"] == 0
    assert dup_bench.score_pairs(pred, labels)["overall"]["false_other"] == 2  # as counted before
