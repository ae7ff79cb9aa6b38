"""The Dask runner swaps only the map step: same vectors and errors as the local runner."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.api import Index
from lookalike.engine.runners import DaskRunner, LocalRunner, make_runner

pytest.importorskip("distributed")


def indexed(idx_dir, photos, runner) -> dict[str, np.ndarray]:
    with Index(idx_dir, "color") as idx:
        rep = idx.add([photos], runner=runner)
        assert rep.added == 8 and [p for p, _ in rep.failed][0].endswith("broken.jpg")
        by_path = {p: i for i, p in idx.catalog.paths_under([str(photos)])}
        vecs = idx.catalog.vectors(list(by_path.values()))
        return {p.rsplit("/", 1)[-1]: vecs[i] for p, i in by_path.items() if i in vecs}


def test_dask_runner_gives_the_same_vectors_as_local(photo_dir, tmp_path):
    (photo_dir / "broken.jpg").write_text("not an image")
    local = indexed(tmp_path / "a", photo_dir, LocalRunner())
    runner = DaskRunner(workers=1, threads=1, processes=False)
    try:
        assert runner.client.scheduler.address.startswith("tcp://127.0.0.1:")
        dask = indexed(tmp_path / "b", photo_dir, runner)
    finally:
        runner.close()
    assert sorted(local) == sorted(dask) and len(local) == 8
    for name in local:
        np.testing.assert_array_equal(local[name], dask[name])


def test_make_runner_names():
    assert isinstance(make_runner("local"), LocalRunner)
    with pytest.raises(ValueError):
        make_runner("ray")


def test_cli_index_with_dask_runner_and_store(photo_dir, tmp_path):
    from lookalike.cli import app

    idx = str(tmp_path / "idx")
    r = CliRunner().invoke(app, ["index", str(photo_dir), "--index", idx, "--pipeline", "color",
                                 "--runner", "dask", "--store", "hnsw", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == 8
    with Index(idx) as index:
        assert type(index.store).__name__ == "HNSWStore" and len(index) == 8
        hit = index.search(str(photo_dir / "img3.jpg"), k=1).hits[0]
        assert hit.path.endswith("img3.jpg")
    r = CliRunner().invoke(app, ["remove", str(photo_dir / "img3.jpg"), "--index", idx])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["optimize", "--index", idx, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out == {"store": "HNSWStore", "spec": "hnsw", "vectors": 7, "dropped": 1}
    # moving to another store rebuilds it from the catalog
    r = CliRunner().invoke(app, ["optimize", "--index", idx, "--store", "flat", "--json"])
    assert json.loads(r.stdout)["store"] == "FlatStore" and json.loads(r.stdout)["vectors"] == 7
