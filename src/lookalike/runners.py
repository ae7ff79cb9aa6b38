"""The read → extract → write loop's map step, written once; the runner that distributes it swaps.

``process_batch`` reads and describes one batch of paths and returns plain results; a runner maps
it over batches (``LocalRunner`` in threads here; other runners on a cluster) and yields results in
order to the single writer.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .io import ImageError, decode, MAX_FILE_BYTES


@dataclass
class Result:
    """One image's outcome: a raw descriptor or an error reason."""

    path: str
    size: int | None
    mtime: float | None
    digest: str | None
    width: int = 0
    height: int = 0
    vector: np.ndarray | None = None
    error: str | None = None
    extra: dict[str, Any] | None = None  # e.g. logits for automatic tags


@dataclass
class Loaded:
    path: str
    size: int | None
    mtime: float | None
    digest: str | None
    image: np.ndarray | None
    error: str | None


def read_one(path: str, max_side: int | None = None) -> Loaded:
    """Read, hash and decode one file; failures become an error reason, never an exception."""
    size = mtime = None
    try:
        st = os.stat(path)
        size, mtime = st.st_size, st.st_mtime
        if st.st_size == 0:
            return Loaded(path, size, mtime, None, None, "empty file (0 bytes)")
        if st.st_size > MAX_FILE_BYTES:
            return Loaded(path, size, mtime, None, None, f"file too large ({st.st_size} bytes)")
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return Loaded(path, size, mtime, None, None, "file not found")
    except OSError as e:
        return Loaded(path, size, mtime, None, None, f"cannot read file ({e.strerror or e})")
    digest = hashlib.sha1(data).hexdigest()
    try:
        return Loaded(path, size, mtime, digest, decode(data, path, max_side=max_side), None)
    except ImageError as e:
        return Loaded(path, size, mtime, digest, None, e.reason)


@lru_cache(maxsize=4)
def _pipeline(spec: str, options_json: str, state_dir: str | None):
    from .pipeline import build

    pipe = build(spec, **json.loads(options_json))
    if state_dir:
        from pathlib import Path

        pipe.load_state(Path(state_dir))
    return pipe


def process_batch(spec: str, options_json: str, state_dir: str | None, paths: list[str],
                  read_threads: int = 2) -> list[Result]:
    """Read and describe ``paths`` with the pipeline named by ``spec`` (built once per process)."""
    pipe = _pipeline(spec, options_json, state_dir)
    max_side = getattr(pipe.extractor, "max_side", None)
    decode_side = 2 * max_side if max_side else None  # cheap JPEG draft decode, exact resize later
    with ThreadPoolExecutor(read_threads) as pool:
        loaded = list(pool.map(lambda p: read_one(p, decode_side), paths))
    ok = [x for x in loaded if x.image is not None]
    out: dict[str, Result] = {}
    if ok:
        images = [x.image for x in ok]
        extra_logits = None
        try:
            describe_with_logits = getattr(pipe.extractor, "describe_with_logits", None)
            if describe_with_logits is not None:
                vecs, extra_logits = describe_with_logits(images)
            else:
                vecs = pipe.describe(images)
            for j, x in enumerate(ok):
                out[x.path] = Result(x.path, x.size, x.mtime, x.digest, x.image.shape[1], x.image.shape[0],
                                     np.asarray(vecs[j], np.float32),
                                     extra={"logits": extra_logits[j]} if extra_logits is not None else None)
        except Exception as e:  # noqa: BLE001 - one bad batch must not stop the run: retry singly
            if len(ok) == 1:
                x = ok[0]
                out[x.path] = Result(x.path, x.size, x.mtime, x.digest, error=f"feature extraction failed ({e})")
            else:
                for x in ok:
                    out[x.path] = process_batch(spec, options_json, state_dir, [x.path], 1)[0]
    for x in loaded:
        if x.image is None:
            out[x.path] = Result(x.path, x.size, x.mtime, x.digest, error=x.error)
    return [out[p] for p in paths]


class LocalRunner:
    """Maps a function over batches in a few threads, yielding results in order."""

    def __init__(self, workers: int = 2, window: int = 3) -> None:
        self.workers, self.window = workers, window

    def map(self, fn: Callable[[list[str]], list[Result]], batches: Iterable[list[str]]) -> Iterator[list[Result]]:
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque = deque()
            for batch in batches:
                pending.append(pool.submit(fn, batch))
                if len(pending) >= self.window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def close(self) -> None:
        pass


class DaskRunner:
    """Maps the batch function on a Dask cluster: each worker builds the pipeline once (per process)
    and is fed batches of paths; results come back in order to the single writer.

    ``scheduler`` is the address of a running scheduler (``tcp://HOST:8786``); without one, a
    ``LocalCluster`` bound to 127.0.0.1 is started for the run and closed by ``close()``.
    """

    def __init__(self, scheduler: str | None = None, workers: int = 2, threads: int = 1,
                 processes: bool = True, window: int | None = None) -> None:
        from distributed import Client, LocalCluster

        self._cluster = None
        if scheduler:
            self.client = Client(scheduler)
        else:
            self._cluster = LocalCluster(host="127.0.0.1", protocol="tcp://", n_workers=workers,
                                         threads_per_worker=threads, processes=processes,
                                         dashboard_address=None)
            self.client = Client(self._cluster)
        n_threads = sum(self.client.nthreads().values()) or 1
        self.window = window or 2 * n_threads

    def map(self, fn: Callable[[list[str]], list[Result]], batches: Iterable[list[str]]) -> Iterator[list[Result]]:
        pending: deque = deque()
        for batch in batches:
            pending.append(self.client.submit(fn, batch, pure=False))
            if len(pending) >= self.window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_runner(name: str = "local", scheduler: str | None = None, **kwargs: Any) -> Any:
    """A runner by name: ``local`` (threads) or ``dask`` (``scheduler`` address or a local cluster)."""
    if name not in RUNNERS:
        raise ValueError(f"unknown runner {name!r} (known: {', '.join(sorted(RUNNERS))})")
    if name == "dask":
        return DaskRunner(scheduler, **kwargs)
    return RUNNERS[name](**kwargs)


RUNNERS: dict[str, Callable[..., Any]] = {"local": LocalRunner, "dask": DaskRunner}
