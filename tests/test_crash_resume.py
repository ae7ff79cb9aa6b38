"""A SIGKILL part-way through indexing leaves an index that opens and completes on re-run."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.api import Index


def _count_ok(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM images WHERE status='ok'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_sigkill_then_resume(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    n = 600
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(src / f"{i:04d}.png")
    idx_dir = tmp_path / "idx"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "lookalike", "index", str(src), "--index", str(idx_dir), "--pipeline", "color",
           "--batch-size", "2", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and _count_ok(idx_dir / "catalog.sqlite") < 20:
        time.sleep(0.005)
    assert proc.poll() is None, "indexing finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _count_ok(idx_dir / "catalog.sqlite")
    assert 0 < partial < n

    idx = Index(idx_dir)  # opens after the kill, store repaired from the catalog
    assert len(idx) == partial
    idx.close()

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    idx = Index(idx_dir)
    paths = [r[0] for r in idx.catalog.db.execute("SELECT path FROM images WHERE status='ok'")]
    assert len(paths) == n and len(set(paths)) == n  # every image exactly once
    assert sorted(idx.store.ids().tolist()) == sorted(idx.catalog.ok_ids().tolist())
    assert len(idx) == n
    hit = idx.search(src / "0123.png", k=1).hits[0]
    assert hit.path.endswith("0123.png")
    idx.close()
