"""Approximate search on a trained FAISS index (IVF-Flat, IVF-PQ, OPQ, ...), exact scores at the end.

The quantised index (tens of bytes per vector) proposes a shortlist of ``k * rescore`` rows; their
exact scores are then computed from the original float32 vectors, kept in an append-only file read
through ``np.memmap``. Row numbers are the FAISS labels; a ``RowMap`` maps them to ids.

A plain IVF-Flat holds the full vectors in its lists, so it keeps no file once trained: its scores
are exact already (no re-scoring), vectors come back through a FAISS direct map (a hash table from
row to list position), and compaction renumbers the rows in place. The vectors are held once.

Until the collection first holds ``train_at`` vectors (default 40 per list) the quantisers are not
trained: vectors only go to the file and searches scan it exactly. The add that crosses the threshold
trains on a sample of the stored vectors (at most ``max_train``) and indexes them all.

For inner product (``center=1``, the default) two things keep the shared direction of CNN
descriptors (all-positive, so all alike along their mean) from ruling the index:

- the codes hold ``x - m`` (``m`` the training mean): ``<q, x - m>`` differs from ``<q, x>`` by
  ``<q, m>``, the same for every row, so the ranking is unchanged;
- for a plain IVF, lists are assigned and probed on the vectors with the mean direction projected
  out and re-normalised. How far a vector reaches along the mean depends mostly on its noise, so
  k-means on raw vectors splits along it and piles the noisy vectors of every cluster into one huge
  list (a 1M test set gave one list of 85k and recall 0.5); on the projected vectors lists are
  balanced and follow the clusters. The scores inside the lists stay exact inner products.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np

from lookalike.store.base import VectorStore, as_ids, as_vectors
from lookalike.store.lazy import faiss
from lookalike.store.rows import (RowMap, commit_folder, map_large_blocks, read_manifest, release_free_memory,
                                  save_npy, top_k)

EXACT_FLOATS = 16_000_000  # a filtered search scans its subset exactly up to this many floats (64 MB read)


def _preassigned(ivf: faiss.IndexIVF, q: np.ndarray, k: int, lists: np.ndarray, coarse_dis: np.ndarray,
                 params: faiss.SearchParametersIVF) -> tuple[np.ndarray, np.ndarray]:
    """``IndexIVF.search_preassigned`` with search parameters (the Python wrapper takes none)."""
    q = np.ascontiguousarray(q, np.float32)
    lists = np.ascontiguousarray(lists, np.int64)
    coarse_dis = np.ascontiguousarray(coarse_dis, np.float32)
    D = np.empty((len(q), k), np.float32)
    I = np.empty((len(q), k), np.int64)
    ivf.search_preassigned_c(len(q), faiss.swig_ptr(q), k, faiss.swig_ptr(lists), faiss.swig_ptr(coarse_dis),
                             faiss.swig_ptr(D), faiss.swig_ptr(I), False, params)
    return D, I


def _metric(name: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if name == "ip" else faiss.METRIC_L2


class IVFPQStore(VectorStore):
    """Any trainable FAISS factory string (default IVF-PQ) plus exact re-scoring from disk."""

    kind = "ivfpq"

    def __init__(self, dim: int, metric: str = "ip", factory: str = "IVF1024,PQ32",
                 nprobe: int = 32, rescore: int = 10, max_train: int | None = None,
                 storage_dir: Path | None = None, by_residual: int = -1, center: int = 1,
                 niter: int = 10, train_at: int | None = None) -> None:
        if metric not in ("ip", "l2"):
            raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
        self.dim, self.metric, self.factory = dim, metric, factory
        self.nprobe, self.rescore, self.niter = nprobe, rescore, niter
        self.by_residual = by_residual  # -1: FAISS's default; 0: one PQ table per query (fast for IP)
        self.center = bool(center) and metric == "ip"
        self._mean: np.ndarray | None = None  # subtracted from stored vectors when centring
        self._index = self._new_index()
        self._ivf = self._plain_ivf()  # lists assigned on projected vectors (see the module doc)
        self._lists = self._flat_lists()
        self.tuning: dict | None = None  # the search setting ``store.tuning`` chose, and its recall
        nlist = faiss.extract_index_ivf(self._index).nlist if self._is_ivf() else 0
        self.max_train = max_train or max(100_000, 100 * nlist)  # ~100 points a list
        self.train_at = train_at or max(10_000, 40 * nlist)
        self._rows = RowMap()
        self._tmp: tempfile.TemporaryDirectory | None = None
        if storage_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lookalike-vectors-")
            storage_dir = Path(self._tmp.name)
        self._vec_path: Path | None = Path(storage_dir) / f"vectors-{uuid.uuid4().hex[:8]}.f32"
        self._vec_path.touch()
        self._mm: np.memmap | None = None
        self._added = 0  # rows added to the lists since freed heap memory was last handed back

    def _new_index(self) -> faiss.Index:
        try:
            index = faiss.index_factory(self.dim, self.factory, _metric(self.metric))
        except RuntimeError as e:
            raise ValueError(f"bad FAISS factory string {self.factory!r}: {e}") from None
        try:
            coder = faiss.downcast_index(faiss.extract_index_ivf(index))
        except RuntimeError:  # not IVF: give it ids through an IDMap
            coder = faiss.downcast_index(index)
            index = faiss.IndexIDMap(index)
            index.own_fields = True
        if hasattr(coder, "do_polysemous_training"):  # on by default and very slow
            coder.do_polysemous_training = False
        if self.by_residual >= 0 and hasattr(coder, "by_residual"):
            coder.by_residual = bool(self.by_residual)
        return index

    def _is_ivf(self) -> bool:
        try:
            faiss.extract_index_ivf(self._index)
            return True
        except RuntimeError:
            return False

    def _plain_ivf(self) -> faiss.IndexIVF | None:
        """The index itself when it is an IVF without a pre-transform and centring is on."""
        if not self.center or not isinstance(faiss.downcast_index(self._index), faiss.IndexIVF):
            return None
        ivf = faiss.extract_index_ivf(self._index)
        if hasattr(ivf, "by_residual"):  # residuals would mix the two spaces
            ivf.by_residual = False
        return ivf

    def _flat_lists(self) -> faiss.IndexIVFFlat | None:
        """The index when it is a plain IVF-Flat (its lists hold the vectors, centred when
        ``center``), with a row -> list position map so that vectors come back from the lists."""
        index = faiss.downcast_index(self._index)
        if type(index) is not faiss.IndexIVFFlat:
            return None
        if index.direct_map.type != faiss.DirectMap.Hashtable:
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        map_large_blocks()  # the lists grow by reallocation: keep their spare capacity off the heap
        return index

    @property
    def vectors_in_lists(self) -> bool:
        """True when the lists hold the vectors (trained IVF-Flat): no file, no re-scoring."""
        return self._lists is not None and self.is_trained

    def _coarse(self, vectors: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """Vectors with the mean direction projected out, L2-normalised: what lists are built on
        (in chunks: one copy of a large training sample, not three)."""
        g = self._mean / max(float(np.linalg.norm(self._mean)), 1e-12)
        out = np.empty(vectors.shape, np.float32)
        for s in range(0, len(vectors), chunk):
            x = vectors[s:s + chunk]
            v = x - np.outer(x @ g, g)
            out[s:s + chunk] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return out

    # -- training -------------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def train(self, vectors: np.ndarray) -> None:
        """Train the quantisers on at most ``max_train`` rows sampled from ``vectors``; index the
        vectors stored before (they were searched exactly until now)."""
        self._train(as_vectors(vectors, self.dim))
        self._index_stored()
        if self.vectors_in_lists:
            self._drop_file()
        release_free_memory()

    def _index_stored(self, batch: int = 100_000) -> None:
        live = self._rows.live_rows()
        if self._index.ntotal or not len(live):
            return
        mm = self._vectors()
        for s in range(0, len(live), batch):
            rows = live[s:s + batch]
            self._index_add(np.ascontiguousarray(mm[rows], np.float32), rows)

    def _sample(self, n: int) -> np.ndarray:
        """Sorted indices of at most ``max_train`` of ``n`` rows (a fixed random sample)."""
        if n <= self.max_train:
            return np.arange(n)
        return np.sort(np.random.default_rng(0).choice(n, self.max_train, replace=False))

    def _train(self, v: np.ndarray) -> None:
        if len(v) > self.max_train:
            v = v[self._sample(len(v))]
        if self.center:
            self._mean = v.mean(axis=0, dtype=np.float64).astype(np.float32)
        try:
            if self._ivf is not None:  # spherical k-means on the projected vectors
                if len(v) < self._ivf.nlist:
                    raise RuntimeError(f"{len(v)} training points for {self._ivf.nlist} lists")
                km = faiss.Kmeans(self.dim, self._ivf.nlist, niter=self.niter, spherical=True,
                                  seed=1, max_points_per_centroid=10**6)
                km.train(self._coarse(v))
                self._set_centroids(km.centroids)  # now trained: FAISS skips its own k-means
            if self._lists is not None and self._lists.quantizer.ntotal == self._lists.nlist:
                self._index.is_trained = True  # nothing else to learn: spare a centred copy
            else:
                self._index.train(self._centred(v))
        except RuntimeError as e:  # e.g. fewer training points than centroids
            raise ValueError(f"cannot train {self.factory!r} on {len(v)} vectors: {e}") from None

    def _set_centroids(self, centroids: np.ndarray) -> None:
        """The list centroids, held in half precision: one query reads every centroid (21 MB at
        4096 x 1280 in float32, memory-bound, 0.75 ms), and float16 halves that (0.46 ms) while
        choosing the same lists (the nearest list agreed for 300 of 300 queries at 1M)."""
        old = self._ivf.quantizer
        fp16 = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_fp16, old.metric_type)
        fp16.add(np.ascontiguousarray(centroids, np.float32))
        self._ivf.quantizer = fp16
        fp16.this.disown()  # the IVF owns and frees its quantizer
        old.this.acquire()  # the float32 one it replaced is freed with this wrapper

    def _centred(self, vectors: np.ndarray) -> np.ndarray:
        return vectors - self._mean if self._mean is not None else vectors

    def _index_add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        x = np.ascontiguousarray(self._centred(vectors), np.float32)
        if self._ivf is None:
            self._index.add_with_ids(x, rows)
            return
        _, lists = self._ivf.quantizer.search(self._coarse(vectors), 1)
        lists, rows = np.ascontiguousarray(lists[:, 0], np.int64), np.ascontiguousarray(rows, np.int64)
        self._ivf.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(rows), faiss.swig_ptr(lists))

    def _index_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._ivf is None:
            return self._index.search(q, k)
        nprobe = min(self.nprobe, self._ivf.nlist)
        self._ivf.nprobe = nprobe
        coarse_dis, lists = self._ivf.quantizer.search(self._coarse(q), nprobe)
        return self._ivf.search_preassigned(q, k, lists, coarse_dis)

    def _set_nprobe(self) -> None:
        try:
            faiss.extract_index_ivf(self._index).nprobe = self.nprobe
        except RuntimeError:
            pass

    # -- vectors on disk ------------------------------------------------------------------------
    def _vectors(self) -> np.ndarray:
        if self._vec_path is None:
            raise RuntimeError("the vectors are held in the IVF lists, not in a file")
        if self._mm is None or len(self._mm) != self._rows.n_rows:
            self._mm = (np.memmap(self._vec_path, np.float32, "r", shape=(self._rows.n_rows, self.dim))
                        if self._rows.n_rows else np.zeros((0, self.dim), np.float32))
        return self._mm

    def _append_vectors(self, vectors: np.ndarray) -> None:
        with open(self._vec_path, "ab") as f:
            f.write(vectors.tobytes())
        self._mm = None

    def _drop_file(self) -> None:
        """Stop keeping a vector file (the lists hold the vectors). A file inside a saved folder
        stays until the next save, which no longer names it: the saved store keeps opening."""
        self._mm = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._vec_path = None

    def _list_chunks(self, chunk: int = 65_536):
        """(rows, vectors) of the IVF-Flat lists, whole lists gathered into chunks of ~``chunk``."""
        il, rows, vecs, size = self._lists.invlists, [], [], 0
        for lst in range(self._lists.nlist):
            n = il.list_size(lst)
            if n:
                rows.append(faiss.rev_swig_ptr(il.get_ids(lst), n).copy())
                vecs.append(faiss.rev_swig_ptr(il.get_codes(lst), n * il.code_size).view(np.float32)
                            .reshape(n, self.dim))
                size += n
            if rows and (size >= chunk or lst == self._lists.nlist - 1):
                v = np.vstack(vecs)
                if self._mean is not None:
                    v += self._mean
                yield np.concatenate(rows), v
                rows, vecs, size = [], [], 0

    def _file_chunks(self, chunk: int = 65_536):
        """(rows, vectors) of the live rows of the vector file."""
        live, mm = self._rows.live_rows(), self._vectors()
        for s in range(0, len(live), chunk):
            rows = live[s:s + chunk]
            yield rows, np.ascontiguousarray(mm[rows], np.float32)

    def _row_chunks(self, rows: np.ndarray, chunk: int = 65_536):
        """(rows, vectors) of the given live rows: from the lists of an IVF-Flat, else the file."""
        for s in range(0, len(rows), chunk):
            r = np.ascontiguousarray(rows[s:s + chunk], np.int64)
            if self.vectors_in_lists:
                v = self._lists.reconstruct_batch(r)
                yield r, (v + self._mean if self._mean is not None else v)
            else:
                yield r, np.ascontiguousarray(self._vectors()[r], np.float32)

    # -- the contract ---------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = as_ids(ids), as_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if not len(ids):
            return
        rows = self._rows.append(ids)
        if not self.vectors_in_lists:
            self._append_vectors(vectors)
        if self._index.is_trained:
            self._index_add(vectors, rows)
            self._added += len(ids)
            if self._added >= max(10_000, self._rows.n_rows // 20):  # lists grown by ~5%
                release_free_memory()
                self._added = 0
        elif self._rows.n_rows >= self.train_at:  # first time past the threshold: train, index all
            self.train(np.ascontiguousarray(self._vectors()[self._sample(self._rows.n_rows)], np.float32))

    def remove(self, ids: np.ndarray) -> int:
        rows = self._rows.find(as_ids(ids))
        rows = np.unique(rows[rows >= 0])
        if len(rows):
            self._rows.kill(rows)
            if self._index.ntotal:
                rows = np.ascontiguousarray(rows, np.int64)
                if self._lists is not None:  # the hash-table direct map takes an array selector
                    self._index.remove_ids(faiss.IDSelectorArray(len(rows), faiss.swig_ptr(rows)))
                else:
                    self._index.remove_ids(faiss.IDSelectorBatch(rows))
        return int(len(rows))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = as_vectors(queries, self.dim)
        k = max(1, int(k))
        if len(self._rows) == 0:
            return top_k(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64), k)
        if not self._index.is_trained:  # a small collection: exact scan of the stored vectors
            return self._scan(q, k)
        self._set_nprobe()
        depth = 1 if self.vectors_in_lists else max(1, self.rescore)  # IVF-Flat: exact already
        kk = min(self._rows.n_rows, k * depth)
        dist, rows = self._index_search(q, kk)
        ids = self._rows.to_ids(rows)
        if self.rescore and not self.vectors_in_lists:  # IVF-Flat scores are exact already
            scores = self._exact_scores(q, rows, ids >= 0)
        elif self.metric == "l2":
            scores = -dist
        else:  # undo the centring: add <q, m> back
            scores = dist + (q @ self._mean)[:, None] if self._mean is not None else dist
        return top_k(scores, ids, k)

    def search_within(self, queries: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Search among ``ids`` only: a small subset (``EXACT_FLOATS`` floats to read) or an untrained
        index is scanned exactly (from the vector file, or the lists of an IVF-Flat); otherwise the quantised index is searched
        with an ID selector of the subset's rows, probing more lists in inverse proportion to the
        share kept (so the probed lists still hold k members), then re-scored exactly."""
        q = as_vectors(queries, self.dim)
        k = max(1, int(k))
        rows = self._rows.find(np.unique(as_ids(ids)))
        rows = np.sort(rows[rows >= 0])
        if not len(rows):
            return top_k(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64), k)
        if len(rows) * self.dim <= EXACT_FLOATS or not self._index.is_trained:
            return self._scan(q, k, rows=rows)
        share = len(rows) / max(len(self._rows), 1)
        nlist = faiss.extract_index_ivf(self._index).nlist if self._is_ivf() else 1
        sel = faiss.IDSelectorBatch(rows)
        params = faiss.SearchParametersIVF(sel=sel) if self._is_ivf() else faiss.SearchParameters(sel=sel)
        if self._is_ivf():
            params.nprobe = int(min(nlist, max(self.nprobe, np.ceil(self.nprobe / share))))
        depth = 1 if self.vectors_in_lists else max(1, self.rescore)  # IVF-Flat: exact already
        kk = min(len(rows), k * depth)
        if self._ivf is not None:
            coarse_dis, lists = self._ivf.quantizer.search(self._coarse(q), params.nprobe)
            dist, found = _preassigned(self._ivf, q, kk, lists, coarse_dis, params)
        else:
            dist, found = self._index.search(q, kk, params=params)
        found_ids = self._rows.to_ids(found)
        if (found_ids >= 0).sum(axis=1).min() < min(k, len(rows)):  # the probed lists held too few
            return self._scan(q, k, rows=rows)
        if self.rescore and not self.vectors_in_lists:
            scores = self._exact_scores(q, found, found_ids >= 0)
        elif self.metric == "l2":
            scores = -dist
        else:
            scores = dist + (q @ self._mean)[:, None] if self._mean is not None else dist
        return top_k(scores, found_ids, k)

    def exact_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The true k nearest neighbours, by a scan of every stored vector (the reference that
        ``store.tuning`` measures recall against)."""
        q = as_vectors(queries, self.dim)
        if len(self._rows) == 0:
            return top_k(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64), k)
        return self._scan(q, max(1, int(k)))

    def _scan(self, q: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k over every live row, or over ``rows`` only."""
        if rows is not None:
            chunks = self._row_chunks(rows)
        else:
            chunks = self._list_chunks() if self.vectors_in_lists else self._file_chunks()
        heap = faiss.ResultHeap(len(q), min(k, len(self._rows) if rows is None else len(rows)), keep_max=True)
        for rows, v in chunks:
            sc = q @ v.T if self.metric == "ip" else -(
                (q * q).sum(1)[:, None] - 2 * q @ v.T + (v * v).sum(1)[None])
            kk = min(heap.k, len(rows))
            top = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
            heap.add_result(np.ascontiguousarray(np.take_along_axis(sc, top, 1), np.float32),
                            np.ascontiguousarray(rows[top], np.int64))
        heap.finalize()
        return top_k(heap.D, self._rows.to_ids(heap.I), k)

    def _exact_scores(self, q: np.ndarray, rows: np.ndarray, valid: np.ndarray,
                      chunk: int = 32) -> np.ndarray:
        """Exact similarity of each (query, shortlisted row) pair, read from the vector file."""
        out = np.full(rows.shape, -np.inf, np.float32)
        mm = self._vectors()
        for s in range(0, len(q), chunk):
            r, ok = rows[s:s + chunk], valid[s:s + chunk]
            qi, _ = np.nonzero(ok)
            uniq, inv = np.unique(r[ok], return_inverse=True)
            v = np.asarray(mm[uniq])[inv]  # sorted reads, then fan out
            qq = q[s:s + chunk][qi]
            if self.metric == "ip":
                sc = np.einsum("ij,ij->i", v, qq)
            else:
                sc = -np.einsum("ij,ij->i", v - qq, v - qq)
            block = out[s:s + chunk]
            block[ok] = sc
        return out

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids)
        rows = self._rows.find(ids)
        if (rows < 0).any():
            raise KeyError(int(ids[np.argmax(rows < 0)]))
        if self.vectors_in_lists:
            v = self._lists.reconstruct_batch(rows) if len(rows) else np.zeros((0, self.dim), np.float32)
            return v + self._mean if self._mean is not None else v
        return np.array(self._vectors()[rows], np.float32)

    def ids(self) -> np.ndarray:
        return self._rows.live_ids()

    def compact(self, batch: int = 100_000) -> int:
        """Rewrite the vector file and the index without removed rows; return how many were dropped."""
        dropped = self._rows.n_dead
        if not dropped:
            return 0
        if self.vectors_in_lists:
            self._renumber_lists()
            return dropped
        live, old_mm = self._rows.live_rows(), self._vectors()
        ids = self._rows.to_ids(live)
        index = faiss.clone_index(self._index)
        index.reset()  # keeps the trained quantisers
        new_path = self._vec_path.with_name(f"vectors-{uuid.uuid4().hex[:8]}.f32")
        rows = RowMap()
        old = self._index
        self._index = index
        self._ivf, self._lists = self._plain_ivf(), self._flat_lists()
        try:
            with open(new_path, "wb") as f:
                for s in range(0, len(live), batch):
                    vecs = np.ascontiguousarray(old_mm[live[s:s + batch]], np.float32)
                    f.write(vecs.tobytes())
                    new_rows = rows.append(ids[s:s + batch])
                    if index.is_trained:
                        self._index_add(vecs, new_rows)
        except BaseException:
            self._index = old
            self._ivf, self._lists = self._plain_ivf(), self._flat_lists()
            new_path.unlink(missing_ok=True)
            raise
        self._rows, self._mm = rows, None
        old_path, self._vec_path = self._vec_path, new_path
        if self._tmp is not None:
            old_path.unlink(missing_ok=True)  # a saved folder's file goes at its next save
        return dropped

    def _renumber_lists(self) -> None:
        """Compaction when the lists hold the vectors: give the live rows consecutive numbers in
        place (removed rows are gone from the lists already), no second copy of the vectors."""
        live = self._rows.live_rows()
        new_row = np.full(self._rows.n_rows, -1, np.int64)
        new_row[live] = np.arange(len(live))
        rows = RowMap()
        rows.append(self._rows.to_ids(live))
        il = self._lists.invlists
        for lst in range(self._lists.nlist):
            n = il.list_size(lst)
            if n:
                labels = faiss.rev_swig_ptr(il.get_ids(lst), n)
                labels[:] = new_row[labels]
        self._lists.set_direct_map_type(faiss.DirectMap.NoMap)
        self._lists.set_direct_map_type(faiss.DirectMap.Hashtable)
        self._rows = rows
        release_free_memory()

    def memory_bytes(self) -> int:
        """In-memory size: codes (IVF-Flat: the vectors), lists, quantisers and the row table
        (not a disk file)."""
        return int(faiss.serialize_index(self._index).nbytes + self._rows.nbytes())

    def save(self, path: Path) -> None:
        path = Path(path)
        ids, alive = self._rows.arrays()
        parts = {
            "index": lambda p: faiss.write_index(self._index, str(p)),
            "ids": lambda p: save_npy(p, ids),
            "alive": lambda p: save_npy(p, alive),
        }
        if self._mean is not None:
            parts["mean"] = lambda p: save_npy(p, self._mean)
        inside = (path.exists() and self._vec_path is not None
                  and self._vec_path.parent.resolve() == path.resolve())
        if not inside and self._vec_path is not None:
            parts["vectors"] = lambda p: shutil.copyfile(self._vec_path, p)
        meta = {"kind": self.kind, "dim": self.dim, "metric": self.metric, "factory": self.factory,
                "nprobe": self.nprobe, "rescore": self.rescore, "max_train": self.max_train,
                "by_residual": self.by_residual, "center": int(self.center), "niter": self.niter,
                "train_at": self.train_at, "n_rows": self._rows.n_rows,
                "vectors_in_lists": int(self.vectors_in_lists), "tuning": self.tuning}
        if inside:
            meta["vectors"] = self._vec_path.name
        commit_folder(path, parts, meta, keep=(self._vec_path.name,) if inside else ())
        if not inside and self._vec_path is not None:  # keep appending to the saved copy from now on
            self._vec_path = path / read_manifest(path)["files"]["vectors"]
            self._mm = None
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    @classmethod
    def load(cls, path: Path) -> "IVFPQStore":
        path = Path(path)
        m = read_manifest(path)
        files = m["files"]
        store = cls(m["dim"], m["metric"], m["factory"], m["nprobe"], m["rescore"], m["max_train"],
                    storage_dir=path, by_residual=m.get("by_residual", -1),
                    center=m.get("center", 0), niter=m.get("niter", 10),
                    train_at=m.get("train_at"))
        store._vec_path.unlink()  # the constructor's empty file: use the saved one
        store._vec_path = path / files.get("vectors", m.get("vectors", ""))
        store._index = faiss.read_index(str(path / files["index"]))
        store._ivf = store._plain_ivf()
        store._lists = store._flat_lists()
        store._rows = RowMap(np.load(path / files["ids"]), np.load(path / files["alive"]))
        store._mean = np.load(path / files["mean"]) if "mean" in files else None
        store.tuning = m.get("tuning")
        if store.vectors_in_lists:  # an older IVF-Flat's file is left to its next save to drop
            store._vec_path = None
            return store
        size = m["n_rows"] * m["dim"] * 4
        if store._vec_path.stat().st_size > size:  # rows appended after the last save
            os.truncate(store._vec_path, size)
        return store

    def __len__(self) -> int:
        return len(self._rows)
