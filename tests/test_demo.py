"""The demo's sample collection: near-duplicates of scikit-image's photos are found first."""
from __future__ import annotations

from lookalike import demo
from lookalike.api import Index


def test_sample_collection_and_queries(tmp_path, capsys):
    data = demo.make_sample(tmp_path / "data")
    originals = sorted((data / "collection").glob("*_rot.jpg"))
    assert len(originals) >= 8
    demo.main(["--data", str(data), "--index", str(tmp_path / "idx"), "--pipeline", "color", "-k", "3"])
    out = capsys.readouterr().out
    assert "took" in out and "query:" in out
    idx = Index(tmp_path / "idx")
    for q in sorted((data / "queries").glob("*_crop.jpg"))[:5]:
        name = q.name.replace("_crop.jpg", "")
        top = [h.path for h in idx.search(q, k=3).hits]
        assert any(f"/{name}" in p for p in top), (q, top)
    idx.close()
