"""Writes ``tests/data/index-0.2/``: small indexes as lookalike 0.2.0 wrote them, with the results
0.2.0 gave, so that the tests can check that today's code opens them and answers the same.

Run with lookalike 0.2.0's sources on the path (``git worktree add /tmp/v02 c346221``):

    PYTHONPATH=/tmp/v02/src python tests/data/make_index_0_2.py /tmp/v02-build
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from conftest import synthetic_photo  # noqa: E402

SPECS = ["color", "color+dba+aqe", "color+diffusion", "color+krnn", "color+sv", "gem"]


def queries() -> dict[str, np.ndarray]:
    base = synthetic_photo(3)
    return {"img3": base, "img3-crop": np.ascontiguousarray(base[10:-10, 12:-8]),
            "img5-dark": np.clip(synthetic_photo(5) * 0.8, 0, 255).astype(np.uint8)}


def photos(root: Path) -> Path:
    d = root / "photos"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(10):
        Image.fromarray(synthetic_photo(i)).save(d / f"img{i}.jpg", quality=92)
        Image.fromarray(np.ascontiguousarray(synthetic_photo(i)[::-1])).save(d / f"img{i}-flipped.jpg", quality=85)
    return d


def main(build: Path) -> None:
    import lookalike

    assert lookalike.__version__ == "0.2.0", lookalike.__version__
    out = HERE / "index-0.2"
    shutil.rmtree(out, ignore_errors=True)
    d = photos(build)
    expected: dict[str, dict[str, list]] = {}
    for spec in SPECS:
        folder = build / spec
        shutil.rmtree(folder, ignore_errors=True)
        idx = lookalike.open(folder, pipeline=spec)
        idx.add([d])
        idx.remove([d / "img9.jpg"])  # a remove, as real indexes have
        expected[spec] = {name: [[h.id, h.score] for h in idx.search(q, k=8).hits] for name, q in queries().items()}
        idx.close()
        db = sqlite3.connect(folder / "catalog.sqlite")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
        db.close()
        shutil.copytree(folder, out / spec, ignore=shutil.ignore_patterns("write.lock", "*-wal", "*-shm"))
    (out / "expected.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
