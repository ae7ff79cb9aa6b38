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
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from lookalike.engine.thumbs import make_thumbnail
from lookalike.errors import BadInputError
from lookalike.engine.metadata import row_metadata
from lookalike.io import ImageError, ImageInfo, decode, image_info, read_file
from lookalike.features.hashes import dihedral_phashes, pixel_digest, to_bytes
from lookalike.pipelines import PipelineDoc, build


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
    same_as: int | None = None  # the indexed image whose vector was reused (same content)
    meta: dict[str, Any] | None = None  # date taken, camera, type, folder (``engine.metadata``)
    thumb: bytes | None = None  # its thumbnail (engine.thumbs), made from the image decoded here
    pixels: str | None = None  # digest of the decoded pixels (features.hashes)
    phash: bytes | None = None  # perceptual hashes of the eight orientations


@dataclass
class Loaded:
    path: str
    size: int | None
    mtime: float | None
    digest: str | None
    image: np.ndarray | None
    error: str | None
    info: ImageInfo | None = None
    thumb: bytes | None = None

    def result(self, vector: np.ndarray | None = None, error: str | None = None, **kw: Any) -> Result:
        """This file's ``Result``: its pixel size and metadata from the header (the decoded image
        may be smaller), with a vector or an error."""
        if error is not None or vector is None:
            return Result(self.path, self.size, self.mtime, self.digest, error=error, **kw)
        meta = row_metadata(self.path, self.mtime, self.info)
        h, w = self.image.shape[:2] if self.image is not None else (0, 0)
        return Result(self.path, self.size, self.mtime, self.digest, meta.pop("width") or w,
                      meta.pop("height") or h, vector, meta=meta, **kw)


READ_THREADS = 2  # decoding threads per batch (PIL and libjpeg-turbo decode without the GIL)


def decode_side(pipe: Any) -> tuple[int | None, int | None]:
    """(reduce_to, max_side) to decode a pipeline's images with: an extractor that resizes every
    image itself (``decode_side``) gets them as small as is cheap above that side; others get them
    shrunk to twice their ``max_side`` (a cheap JPEG draft decode, their exact resize later)."""
    ex = pipe.extractor
    if getattr(ex, "decode_side", None):
        return ex.decode_side, None
    return None, (2 * ex.max_side if ex.max_side else None)


def read_one(path: str, side: tuple[int | None, int | None] = (None, None)) -> Loaded:
    """Read, hash and decode one file (``side``: see ``decode_side``); failures become an error
    reason, never an exception. Only the decoded, reduced image is kept."""
    size = mtime = None
    try:
        st = os.stat(path)
        size, mtime = st.st_size, st.st_mtime
    except OSError:
        pass  # read_file gives the reason
    try:
        data = read_file(path)
    except ImageError as e:
        return Loaded(path, size, mtime, None, None, e.reason)
    digest = hashlib.sha1(data).hexdigest()
    reduce_to, max_side = side
    try:
        image = decode(data, path, max_side=max_side, reduce_to=reduce_to)
    except ImageError as e:
        return Loaded(path, size, mtime, digest, None, e.reason)
    return Loaded(path, size, mtime, digest, image, None, image_info(data, path))


def describer_key(doc: PipelineDoc) -> str:
    """What a worker needs to build the describing part of a pipeline: its base and options
    (re-rank steps do not change what is described)."""
    return json.dumps(PipelineDoc(doc.base, dict(doc.options)).to_dict(), sort_keys=True)


@lru_cache(maxsize=4)
def _pipeline(key: str, state_dir: str | None, state_version: str | None = None):
    pipe = build(PipelineDoc.from_dict(json.loads(key)))
    if state_dir:
        pipe.load_state(Path(state_dir), steps=False)
    return pipe


Known = Callable[[str], "tuple[int, np.ndarray] | None"]  # content hash -> (id, raw vector) already described


def with_thumb(x: Loaded, have_thumb: Callable[[str], bool] | None) -> Loaded:
    """``x`` with the thumbnail of its decoded image, unless ``have_thumb`` says its content has one."""
    if x.image is not None and x.digest and not (have_thumb is not None and have_thumb(x.digest)):
        x.thumb = make_thumbnail(x.image)
    return x


def process_batch(key: str, state_dir: str | None, paths: list[str], read_threads: int = READ_THREADS,
                  known: Known | None = None, state_version: str | None = None, thumbs: bool = False,
                  have_thumb: Callable[[str], bool] | None = None) -> list[Result]:
    """Read and describe ``paths`` with the pipeline ``key`` names (``describer_key``; built once
    per process). A file whose content hash ``known`` recognises is not described again: its
    vector is reused (``Result.same_as`` names the image it came from). With ``thumbs``, each
    image's thumbnail is made from the decoded image (unless ``have_thumb(hash)`` says it exists)."""
    pipe = _pipeline(key, state_dir, state_version)
    side = decode_side(pipe)

    def load(p: str) -> Loaded:
        x = read_one(p, side)
        return with_thumb(x, have_thumb) if thumbs else x

    with ThreadPoolExecutor(read_threads) as pool:
        loaded = list(pool.map(load, paths))
    out: dict[str, Result] = {}
    ok = []
    for x in loaded:
        hit = known(x.digest) if (known is not None and x.image is not None and x.digest) else None
        if hit is not None:
            out[x.path] = x.result(hit[1], same_as=hit[0], thumb=x.thumb)
        elif x.image is not None:
            ok.append(x)
    if ok:
        images = [x.image for x in ok]
        try:
            vecs, logits = pipe.extractor.describe_with_logits(images)
            for j, x in enumerate(ok):
                out[x.path] = x.result(np.asarray(vecs[j], np.float32),
                                       extra={"logits": logits[j]} if logits is not None else None,
                                       thumb=x.thumb)
        except Exception as e:  # noqa: BLE001 - one bad batch must not stop the run: retry singly
            if len(ok) == 1:
                x = ok[0]
                out[x.path] = x.result(error=f"feature extraction failed ({e})")
            else:
                for x in ok:
                    out[x.path] = process_batch(key, state_dir, [x.path], 1, None, state_version, thumbs,
                                                have_thumb)[0]
    for x in loaded:
        if x.image is None:
            out[x.path] = x.result(error=x.error)
        elif out[x.path].vector is not None:  # fingerprints for finding copies, from the decoded image
            out[x.path].pixels = pixel_digest(x.image)
            out[x.path].phash = to_bytes(dihedral_phashes(x.image))
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
        raise BadInputError(f"unknown runner {name!r} (known: {', '.join(sorted(RUNNERS))})")
    if name == "dask":
        return DaskRunner(scheduler, **kwargs)
    return RUNNERS[name](**kwargs)


RUNNERS: dict[str, Callable[..., Any]] = {"local": LocalRunner, "dask": DaskRunner}
