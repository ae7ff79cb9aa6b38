"""IVF stores: resident memory that follows the vectors, half-precision centroids, the live-row count."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

GROWTH = textwrap.dedent("""
    import gc
    import numpy as np
    from lookalike.store.factory import make_store
    from lookalike.store.rows import release_free_memory

    def anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon"):
                return int(line.split()[1]) * 1024

    rng = np.random.default_rng(0)
    n, dim = 40_000, 512
    store = make_store("IVF256,Flat", dim, "ip")
    store.train(rng.standard_normal((10_000, dim), dtype=np.float32))
    gc.collect(); release_free_memory()
    before = anon()
    for s in range(0, n, 500):  # many small batches: every list is reallocated many times
        store.add(np.arange(s, s + 500), rng.standard_normal((500, dim), dtype=np.float32))
    gc.collect(); release_free_memory()
    print((anon() - before) / (n * dim * 4))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/status"),
                    reason="reads RssAnon from /proc")
def test_ivfflat_growth_keeps_resident_memory_near_the_vectors():
    out = subprocess.run([sys.executable, "-c", GROWTH], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"})
    ratio = float(out.stdout.strip().splitlines()[-1])
    assert ratio <= 1.15, f"resident growth is {ratio:.2f}x the vectors added"


def test_row_map_keeps_its_live_count_through_adds_kills_and_repeats():
    import numpy as np

    from lookalike.store.rows import RowMap

    rows = RowMap()
    rows.append(np.arange(10))
    rows.kill(np.array([1, 2, 2]))
    rows.kill(np.array([2, 3]))  # row 2 is dead already
    rows.append(np.arange(10, 15))
    assert len(rows) == 12 == len(rows.live_rows())
    again = RowMap(*rows.arrays())
    assert len(again) == 12


def test_trained_ivf_holds_half_precision_centroids_that_choose_the_same_lists():
    import numpy as np

    from lookalike.store.factory import make_store
    from lookalike.store.lazy import faiss

    rng = np.random.default_rng(3)
    x = rng.standard_normal((4000, 96), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store = make_store("IVF32,Flat", 96, "ip")
    store.train(x)
    store.add(np.arange(len(x)), x)
    quantizer = faiss.downcast_index(store._ivf.quantizer)
    assert isinstance(quantizer, faiss.IndexScalarQuantizer)
    assert quantizer.sq.qtype == faiss.ScalarQuantizer.QT_fp16
    coarse = store._coarse(x[:200])
    exact = np.argmax(coarse @ quantizer.reconstruct_n(0, quantizer.ntotal).T, axis=1)
    assert (quantizer.search(coarse, 1)[1][:, 0] == exact).mean() >= 0.99
    store.nprobe = 32
    assert (store.search(x[:50], 1)[1][:, 0] == np.arange(50)).all()
