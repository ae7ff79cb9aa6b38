"""Choose a vector store from a spec string, and open any saved store.

Specs: ``auto`` (``auto?recall=0.99&memory_mb=2048``: its tuning target and memory budget),
``flat``, ``ivfflat``, ``hnsw``, ``ivfpq``, a FAISS factory string (``OPQ64,IVF4096,PQ64``,
``HNSW32``, ``Flat``), ``milvus://HOST:PORT/COLLECTION`` or ``milvus:///path/file.db``. Query
parameters tune the store: ``hnsw?ef_search=128``, ``IVF4096,PQ64?nprobe=64&rescore=20``,
``milvus:///x.db?collection=photos``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from lookalike.errors import BadInputError
from lookalike.registry import Registry
from lookalike.store.base import VectorStore
from lookalike.store.lazy import faiss
from lookalike.store.flat import FlatStore
from lookalike.store.hnsw import HNSWStore
from lookalike.store.ivfpq import IVFPQStore
from lookalike.store.rows import MANIFEST
from lookalike.store.tuning import DEFAULT_RECALL

EXACT_UP_TO = 50_000           # below this, brute force is fast enough and exact
DEFAULT_BUDGET_MB = 8192       # memory the store may use when no budget is given (1.5M x 1280 IVF-Flat)
AUTO_OPTIONS = ("recall", "memory_mb")  # the query parameters of ``auto`` itself


def n_lists(n: int | None) -> int:
    """~4 sqrt(n) inverted lists, a power of two (1024 at 100k, 4096 at 1M)."""
    return int(2 ** round(math.log2(max(64, 4 * math.sqrt(n or 250_000)))))


def ivfflat_factory(n: int | None) -> str:
    """IVF over full vectors with ~4 sqrt(n) lists."""
    return f"IVF{n_lists(n)},Flat"


def ivfpq_factory(dim: int, n: int | None) -> str:
    """IVF-PQ with ~4 sqrt(n) lists and ~dim/10 sub-quantisers of 8 bits (<= 128 bytes a vector)."""
    m = max(d for d in range(1, 129) if dim % d == 0 and d <= max(1, dim // 10))
    return f"IVF{n_lists(n)},PQ{m}"


def choose(n: int | None, dim: int, memory_budget_mb: float | None = None) -> str:
    """The ``auto`` rule: exact below ``EXACT_UP_TO``; IVF over full vectors while they fit the
    budget (at 1M x 1280 it beat HNSW on recall, latency and build time, see BENCHMARKS.md);
    else IVF-PQ with exact re-scoring from disk."""
    n = n or 0
    budget = (memory_budget_mb or DEFAULT_BUDGET_MB) * 2**20
    if n < EXACT_UP_TO and 4 * dim * n <= budget:
        return "flat"
    if 4 * dim * n * 1.05 <= budget:
        return "ivfflat"
    return "ivfpq"


def auto_factory(n: int | None, dim: int, memory_budget_mb: float | None = None) -> str:
    """The store ``auto`` builds for ``n`` vectors: ``flat`` or the IVF factory string."""
    name = choose(n, dim, memory_budget_mb)
    if name == "flat":
        return "flat"
    return ivfflat_factory(n) if name == "ivfflat" else ivfpq_factory(dim, n)


def store_factory(store: VectorStore) -> str | None:
    """What ``auto_factory`` would call this store (None for stores ``auto`` never makes)."""
    store = getattr(store, "inner", store)  # a server's locked wrapper
    if isinstance(store, FlatStore):
        return "flat"
    return getattr(store, "factory", None)


def _params(query: str) -> dict[str, int | float]:
    out: dict[str, int | float] = {}
    for k, v in parse_qsl(query):
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                raise BadInputError(f"store parameter {k}={v!r} is not a number") from None
    return out


def auto_options(spec: str) -> dict | None:
    """The recall target and memory budget (MB, None: the default) of an ``auto`` spec, such as
    ``auto?recall=0.99&memory_mb=2048``; None for any other spec."""
    body, _, query = (spec or "").strip().partition("?")
    if body.lower() != "auto":
        return None
    params = _params(query)
    recall, memory = float(params.get("recall", DEFAULT_RECALL)), params.get("memory_mb")
    if not 0 < recall <= 1:
        raise BadInputError(f"the recall target must be in (0, 1], not {recall:g}")
    if memory is not None and memory <= 0:
        raise BadInputError(f"the memory budget must be positive, not {memory:g} MB")
    return {"recall": recall, "memory_mb": memory}


def auto_spec(spec: str | None, recall: float | None = None, memory_mb: float | None = None) -> str:
    """``spec`` (default ``auto``) with its recall target and memory budget set where given."""
    opts = auto_options(spec or "auto")
    if opts is None:
        raise BadInputError(f"a recall target and a memory budget apply to the 'auto' store, not {spec!r}")
    _, _, query = (spec or "auto").partition("?")
    other = [(k, v) for k, v in parse_qsl(query) if k not in AUTO_OPTIONS]
    recall = opts["recall"] if recall is None else recall
    memory_mb = opts["memory_mb"] if memory_mb is None else memory_mb
    parts = ([f"recall={recall:g}"] if recall != DEFAULT_RECALL else []) + \
        ([f"memory_mb={memory_mb:g}"] if memory_mb is not None else []) + [f"{k}={v}" for k, v in other]
    out = "auto" + ("?" + "&".join(parts) if parts else "")
    auto_options(out)  # the values are checked
    return out


StoreMaker = Callable[[int, str, "int | None", dict[str, int]], VectorStore]  # (dim, metric, n_expected, params)


def _ivfflat(dim: int, metric: str, n: int | None, params: dict[str, int]) -> VectorStore:
    """IVF over full vectors: exact scores inside the probed lists, nothing to re-score."""
    return IVFPQStore(dim, metric, ivfflat_factory(n), **{"nprobe": 8, "rescore": 0, **params})


def _ivfpq(dim: int, metric: str, n: int | None, params: dict[str, int]) -> VectorStore:
    """IVF-PQ; for IP, PQ on the vectors (not residuals): one lookup table per query."""
    return IVFPQStore(dim, metric, ivfpq_factory(dim, n), **{"by_residual": 0 if metric == "ip" else -1, **params})


# Named stores (``make_store``) and the kinds saved stores declare (``load_store``): a new store is
# a module in store/ and its lines here.
STORES: Registry[StoreMaker] = Registry("store")
STORES.add("flat", lambda dim, metric, n, params: FlatStore(dim, metric))
STORES.add("hnsw", lambda dim, metric, n, params: HNSWStore(dim, metric, **params))
STORES.add("ivfflat", _ivfflat)
STORES.add("ivfpq", _ivfpq)
SAVED_KINDS: dict[str, type[VectorStore]] = {"hnsw": HNSWStore, "ivfpq": IVFPQStore}


def make_store(spec: str, dim: int, metric: str = "ip", n_expected: int | None = None,
               memory_budget_mb: float | None = None) -> VectorStore:
    """A new, empty store for ``spec`` (see the module docstring)."""
    spec = spec.strip()
    if spec.startswith("milvus:"):
        return _milvus(spec, dim, metric)
    body, _, query = spec.partition("?")
    params = _params(query)
    name = body.lower()
    if name == "auto":
        opts = auto_options(spec)
        params = {k: v for k, v in params.items() if k not in AUTO_OPTIONS}
        name = choose(n_expected, dim, memory_budget_mb or opts["memory_mb"])
    if name in ("idmap,flat", "idmap2,flat"):
        name = "flat"
    if name in STORES:
        return STORES.get(name)(dim, metric, n_expected, params)
    try:  # a FAISS factory string
        faiss.index_factory(dim, body, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise BadInputError(f"unknown store spec {spec!r}: not auto/flat/hnsw/ivfpq/milvus://..., "
                         f"nor a FAISS factory string ({e})") from None
    if body.startswith("HNSW") and "IVF" not in body:
        return HNSWStore(dim, metric, factory=body, **params)
    return IVFPQStore(dim, metric, factory=body, **params)


def _milvus(spec: str, dim: int, metric: str) -> VectorStore:
    from lookalike.store.milvus import MilvusStore

    u = urlsplit(spec)
    opts = dict(parse_qsl(u.query))
    token = os.environ.get("MILVUS_TOKEN", "")
    if u.netloc:  # milvus://HOST:PORT/COLLECTION
        collection = u.path.strip("/") or opts.get("collection", "lookalike")
        return MilvusStore(dim, metric, uri=f"http://{u.netloc}", collection=collection, token=token)
    if not u.path:
        raise BadInputError(f"milvus spec {spec!r} names neither a server nor a file")
    return MilvusStore(dim, metric, uri=u.path, collection=opts.get("collection", "lookalike"),
                       token=token)


def load_store(path: Path) -> VectorStore:
    """Open a store written by any backend's ``save``."""
    path = Path(path)
    if path.is_dir():
        kind = json.loads((path / MANIFEST).read_text())["kind"]
        return SAVED_KINDS[kind].load(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"{":
        from lookalike.store.milvus import MilvusStore

        return MilvusStore.load(path)
    if head == b"PK":  # an .npz: the bag-of-words store
        from lookalike.store.bow import BowStore

        return BowStore.load(path)
    return FlatStore.load(path)
