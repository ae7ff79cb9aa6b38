"""A Milvus collection behind the ``VectorStore`` contract (``pymilvus.MilvusClient``).

``uri`` is a server (``http://HOST:19530``, a cluster's proxy) or a local Milvus Lite file
(``/path/file.db``, no server). Every call uses ``consistency_level="Strong"``, so a removed id is
never returned and an added one is found at once. Milvus persists by itself: ``save`` writes a small
JSON pointer (uri, collection, dim, metric) that ``load`` reconnects from.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.store.base import VectorStore, as_ids, as_vectors
from lookalike.store.rows import top_k

_STRONG = "Strong"
_MAX_TOPK = 16384  # Milvus's limit on limit (and offset + limit)


def is_local_uri(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


class MilvusStore(VectorStore):
    """Vectors in a Milvus collection with an INT64 primary key ``id`` and a vector field."""

    kind = "milvus"

    def __init__(self, dim: int, metric: str = "ip", uri: str = "lookalike.db",
                 collection: str = "lookalike", token: str = "", index_type: str | None = None,
                 batch: int = 1000) -> None:
        from pymilvus import DataType, MilvusClient

        if metric not in ("ip", "l2"):
            raise ValueError(f"metric must be 'ip' or 'l2', not {metric!r}")
        self.dim, self.metric, self.uri, self.collection = dim, metric, uri, collection
        self.batch = batch
        self._metric_type = "IP" if metric == "ip" else "L2"
        self._client = MilvusClient(uri=uri, token=token)
        if self._client.has_collection(collection):
            self._check_existing()
            return
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        params = self._client.prepare_index_params()
        index_type = index_type or ("FLAT" if is_local_uri(uri) else "AUTOINDEX")
        params.add_index(field_name="vector", index_type=index_type, metric_type=self._metric_type)
        self._client.create_collection(collection, schema=schema, index_params=params,
                                       consistency_level=_STRONG)

    def _check_existing(self) -> None:
        desc = self._client.describe_collection(self.collection)
        for field in desc.get("fields", []):
            if field.get("name") == "vector":
                dim = int(field.get("params", {}).get("dim", self.dim))
                if dim != self.dim:
                    raise ValueError(f"collection {self.collection!r} holds dimension {dim}, "
                                     f"not {self.dim}")

    def _present(self, ids: np.ndarray) -> np.ndarray:
        """The subset of ``ids`` stored in the collection."""
        found: list[int] = []
        for s in range(0, len(ids), self.batch):
            chunk = [int(x) for x in ids[s:s + self.batch]]
            rows = self._client.get(self.collection, ids=chunk, output_fields=["id"],
                                    consistency_level=_STRONG)
            found.extend(int(r["id"]) for r in rows)
        return np.asarray(found, np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = as_ids(ids), as_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if len(ids) != len(np.unique(ids)) or len(self._present(ids)):
            raise ValueError("some ids are present already (or repeat)")
        for s in range(0, len(ids), self.batch):
            rows = [{"id": int(i), "vector": v.tolist()}
                    for i, v in zip(ids[s:s + self.batch], vectors[s:s + self.batch])]
            self._client.insert(self.collection, rows)

    def remove(self, ids: np.ndarray) -> int:
        present = self._present(np.unique(as_ids(ids)))
        for s in range(0, len(present), self.batch):
            self._client.delete(self.collection, ids=[int(x) for x in present[s:s + self.batch]])
        return int(len(present))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = as_vectors(queries, self.dim)
        k = max(1, int(k))
        limit = min(k, _MAX_TOPK)
        scores = np.full((len(q), limit), -np.inf, np.float32)
        ids = np.full((len(q), limit), -1, np.int64)
        step = max(1, min(self.batch, 16384 // limit))
        for s in range(0, len(q), step):
            res = self._client.search(self.collection, data=q[s:s + step].tolist(), limit=limit,
                                      search_params={"metric_type": self._metric_type},
                                      output_fields=[], consistency_level=_STRONG)
            for i, hits in enumerate(res):
                for j, hit in enumerate(hits):
                    d = float(hit["distance"])
                    scores[s + i, j] = d if self.metric == "ip" else -d
                    ids[s + i, j] = int(hit["id"])
        return top_k(scores, ids, k)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = as_ids(ids)
        got: dict[int, Any] = {}
        uniq = np.unique(ids)
        for s in range(0, len(uniq), self.batch):
            rows = self._client.get(self.collection, ids=[int(x) for x in uniq[s:s + self.batch]],
                                    output_fields=["vector"], consistency_level=_STRONG)
            got.update((int(r["id"]), r["vector"]) for r in rows)
        out = np.empty((len(ids), self.dim), np.float32)
        for i, x in enumerate(ids):
            if int(x) not in got:
                raise KeyError(int(x))
            out[i] = np.asarray(got[int(x)], np.float32)
        return out

    def ids(self) -> np.ndarray:
        it = self._client.query_iterator(self.collection, batch_size=self.batch, filter="",
                                         output_fields=["id"], consistency_level=_STRONG)
        out: list[int] = []
        try:
            while True:
                page = it.next()
                if not page:
                    break
                out.extend(int(r["id"]) for r in page)
        finally:
            it.close()
        return np.asarray(out, np.int64)

    def save(self, path: Path) -> None:
        self._client.flush(self.collection)
        path = Path(path)
        uri = self.uri if not is_local_uri(self.uri) else str(Path(self.uri).resolve())
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"kind": self.kind, "uri": uri, "collection": self.collection,
                                   "dim": self.dim, "metric": self.metric}))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "MilvusStore":
        m = json.loads(Path(path).read_text())
        return cls(m["dim"], m["metric"], uri=m["uri"], collection=m["collection"],
                   token=os.environ.get("MILVUS_TOKEN", ""))

    def drop(self) -> None:
        """Delete the whole collection."""
        self._client.drop_collection(self.collection)

    def close(self) -> None:
        self._client.close()

    def __len__(self) -> int:
        res = self._client.query(self.collection, filter="", output_fields=["count(*)"],
                                 consistency_level=_STRONG)
        return int(res[0]["count(*)"])
