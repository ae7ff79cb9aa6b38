"""The HTTP API and web page of an index (FastAPI). Build it with ``create_app(index_dir, token=...)``.

Reads (search, images, thumbnails, stats) are open; writes (``POST /images``, ``DELETE /images/ID``)
need ``Authorization: Bearer TOKEN``. Only files the catalog lists are ever served, looked up by id,
and only while they are still the indexed image (``media.read_indexed``). Paths are shown relative
to the indexed files' common folder unless ``show_paths="absolute"`` (``paths.PathView``).
"""
from __future__ import annotations

import importlib.util
import io
import logging
import os
import threading
import mimetypes
import time
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, List, Optional

from fastapi_offline import FastAPIOffline  # /docs served from the package, no CDN
from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
import numpy as np
from PIL import Image

from lookalike.version import __version__
from lookalike.engine.catalog import ImageRow
from lookalike.engine.compose import Part, parse_query
from lookalike.engine.index import Index
from lookalike.errors import BadInputError, BusyError, ImageError, LookalikeError
from lookalike.io import decode
from lookalike.pipelines import parse_steps, rerankers
from lookalike.server.guards import BodyLimit, SecurityHeaders, token_ok
from lookalike.server.media import ByteCache, NotIndexedFile, Upload, prepare_upload, read_indexed, store_upload
from lookalike.server.paths import MODES, PathView
from lookalike.server.thumbs import THUMB_TYPE, Thumbnails

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MULTIPART_SLACK = 64 * 1024  # multipart framing around an upload of the maximum size
EXPLAIN_SIDE = 1024  # images are drawn at most this large in match explanations


def explain_available() -> bool:
    return importlib.util.find_spec("lookalike.features.local.explain") is not None


def image_error(e: ImageError) -> HTTPException:
    """400 for images refused by size (decompression bombs), 422 for anything that is no image."""
    big = "bomb" in e.reason or "too large" in e.reason
    return HTTPException(400 if big else 422, f"{one_line(e.path)}: not a usable image: {e.reason}")


def one_line(name: str) -> str:
    """A client's file name as it may appear in a one-line message."""
    return " ".join(str(name).split())[:200]


def create_app(index_dir: str | os.PathLike, token: str | None = None, cors: Optional[List[str]] = None,
               max_upload_mb: float = 20.0, reload_every: float = 2.0, show_paths: str = "relative",
               explain_cache_mb: float = 32.0, thumb_cache_mb: float = 32.0,
               watch: Optional[List[str]] = None, watch_options: Optional[dict[str, Any]] = None) -> FastAPI:
    """The app serving the index in ``index_dir`` (which must exist). ``token`` guards writes
    (generated when None: read it from ``app.state.token``). Raises ``NotFoundError`` without an
    index. Searches run concurrently with the index's one writer (``engine.index``); changes made
    by another process are followed at most every ``reload_every`` seconds. ``show_paths``:
    ``relative`` (to the indexed files' common folder) or ``absolute``. Match drawings are cached
    in memory, ``explain_cache_mb`` at most, and so are thumbnails the index lacks (``thumb_cache_mb``).
    ``watch``: folders kept in step with the index while serving (``engine.watch.Watcher``, given
    ``watch_options``)."""
    if show_paths not in MODES:
        raise BadInputError(f"unknown --show-paths {show_paths!r} (known: {', '.join(MODES)})")
    idx = Index(os.path.abspath(index_dir), create=False)  # uploads are stored and looked up by absolute path
    uploads = idx.dir / "uploads"
    shown = PathView(idx.catalog, str(idx.dir), show_paths)
    drawings = ByteCache(int(explain_cache_mb * 1024 * 1024))
    thumbs = Thumbnails(idx.writer.thumbs, idx.catalog, int(thumb_cache_mb * 1024 * 1024))
    follower = Follower(idx, reload_every)
    idx.pipeline.describe([np.full((64, 64, 3), 128, np.uint8)])  # models built before concurrent queries
    max_bytes = int(max_upload_mb * 1024 * 1024)

    watcher = None
    if watch:
        from lookalike.engine.watch import Watcher

        def reported(rep: Any) -> None:
            log.warning("watched folders: added %d, updated %d, removed %d, skipped %d",
                        rep.added, rep.updated, rep.removed, len(rep.failed))
        watcher = Watcher(idx, watch, on_report=reported, **(watch_options or {}))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if watcher is not None:
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()
            idx.close()

    app = FastAPIOffline(title="lookalike", version=__version__, lifespan=lifespan,
                  description="Content-based image search: by image, by indexed image, by text.")
    app.state.index, app.state.token, app.state.max_bytes = idx, token or secrets.token_urlsafe(24), max_bytes
    app.state.follower, app.state.paths, app.state.drawings = follower, shown, drawings
    app.state.thumbs, app.state.watcher = thumbs, watcher

    @app.exception_handler(LookalikeError)
    async def lookalike_error(_: Request, e: LookalikeError) -> JSONResponse:
        headers = {"Retry-After": "5"} if isinstance(e, BusyError) else None
        return JSONResponse({"detail": shown.text(str(e))}, status_code=e.http_status, headers=headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged by the server)"}, status_code=500)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=max_bytes + MULTIPART_SLACK)
    if cors:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    bearer = HTTPBearer(auto_error=False, description="the server's token (printed at start)")

    def writer(request: Request, _: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> None:
        if not token_ok(request.headers.get("authorization"), app.state.token):
            raise HTTPException(401, "this endpoint needs the header 'Authorization: Bearer TOKEN' "
                                     "with the server's token", headers={"WWW-Authenticate": "Bearer"})

    def fresh() -> Index:
        follower.maybe_refresh()
        return idx

    def indexed(image_id: int) -> ImageRow:
        row = idx.catalog.get(image_id)
        if row is None or row.status != "ok":
            raise HTTPException(404, f"no indexed image with id {image_id}")
        return row

    def original_bytes(row: ImageRow) -> bytes:
        try:
            return read_indexed(row.path, row.size, row.mtime, row.hash)
        except NotIndexedFile as e:
            raise HTTPException(404, f"image {row.id} is not served: {e.reason}") from None

    def read_upload(f: UploadFile) -> bytes:
        data = f.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, f"{f.filename}: larger than the limit of {max_bytes} bytes")
        if not data:
            raise HTTPException(422, f"{f.filename}: empty upload")
        return data

    # -- pages and health ------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz", tags=["status"])
    def healthz(ix: Index = Depends(fresh)) -> dict[str, Any]:
        return {"status": "ok", "images": len(ix)}

    @app.get("/stats", tags=["status"])
    def stats(ix: Index = Depends(fresh)) -> dict[str, Any]:
        """The index's counts, pipeline and sizes, and what this server offers."""
        info = ix.info()
        info.pop("index", None)  # the server's folders are not the client's business
        info["skipped"] = shown.items(info.get("skipped", []))
        info.update(explain=explain_available(), max_upload_bytes=max_bytes, reloads=follower.reloads,
                    text=ix.supports_text)
        return info

    # -- search ----------------------------------------------------------------------------------
    # in a query string "+" arrives as a space: "dba+aqe", "dba%2Baqe" and "dba,aqe" all work
    RERANK = Query(None, max_length=200, pattern=r"^[a-z0-9-]+(\([a-z0-9_.,=-]*\))?([+ ,][a-z0-9-]+(\([a-z0-9_.,=-]*\))?)*$",
                   description="re-rank steps for this query, e.g. aqe, dba+aqe, diffusion, sv, aqe(alpha=3)")

    MIN_SCORE = Query(None, description="leave out results scoring below this (text: a 0-1 scale, below 0.3 "
                                         "is no match)")

    def search_filters(
            folder: Optional[str] = Query(None, max_length=1000, description="only images in this folder (as "
                                          "/filters lists it) and its subfolders"),
            date_from: Optional[str] = Query(None, max_length=32, description="taken on or after, YYYY-MM-DD"),
            date_to: Optional[str] = Query(None, max_length=32, description="taken on or before, YYYY-MM-DD"),
            camera: Optional[str] = Query(None, max_length=200, description="part of the camera's name (any case)"),
            min_width: Optional[int] = Query(None, ge=0), min_height: Optional[int] = Query(None, ge=0),
            max_width: Optional[int] = Query(None, ge=0), max_height: Optional[int] = Query(None, ge=0),
            type: Optional[str] = Query(None, max_length=200, description="file types, e.g. jpg,png"),
            keyword: Optional[str] = Query(None, max_length=200, description="a word of the image's text "
                                           "(indexes with text)")) -> Optional[dict[str, Any]]:
        given = {"folder": shown.folder(folder) if folder else None, "date_from": date_from, "date_to": date_to,
                 "camera": camera, "min_width": min_width, "min_height": min_height, "max_width": max_width,
                 "max_height": max_height, "types": type, "keyword": keyword}
        given = {k: v for k, v in given.items() if v not in (None, "")}
        return given or None

    OFFSET = Query(0, ge=0, le=100_000, description="skip this many results (pages)")
    COMPOSED = Query(None, max_length=2000, description="a composed query: parts joined by ' + ' and ' - ', "
                     "each optionally WEIGHT: first; #ID is an indexed image, anything else text, e.g. "
                     "'2:beach + #12 - people'")

    def composed(q: Optional[str]) -> Optional[list[Part]]:
        return parse_query(q, allow_paths=False) if q is not None else None

    def checked_steps(rerank: Optional[str]) -> Optional[str]:
        steps = parse_steps(rerank or "")
        known = rerankers()
        unknown = [s.name for s in steps if s.name not in known]
        if unknown:
            raise BadInputError(f"unknown re-rank step {unknown[0]!r} (known: {', '.join(known.names())})")
        return "+".join(s.to_spec() for s in steps) or None

    @app.post("/search", tags=["search"])
    def search_image(image: Optional[UploadFile] = File(None, description="the query image"),
                     k: int = Query(10, ge=1, le=1000), offset: int = OFFSET, min_score: Optional[float] = MIN_SCORE,
                     rotate: bool = Query(False, description="also search with the image turned 90° each way"),
                     rerank: Optional[str] = RERANK, q: Optional[str] = COMPOSED,
                     filters: Optional[dict[str, Any]] = Depends(search_filters),
                     ix: Index = Depends(fresh)) -> dict[str, Any]:
        """The k indexed images most similar to an uploaded image (from place ``offset`` on), among
        those that pass the filters; with ``q``, the image is one part of a composed query."""
        if image is None and q is None:
            raise HTTPException(400, "POST an image (form field 'image'), or give the query parameter 'q'")
        steps = checked_steps(rerank)
        parts = composed(q)
        rgb = None
        if image is not None:
            data = read_upload(image)
            try:
                rgb = decode(data, image.filename or "<upload>")
            except ImageError as e:
                raise image_error(e) from None
        if parts is not None:
            if rotate:
                raise HTTPException(400, "rotate applies to a single query image, not to a composed query 'q'")
            if rgb is not None:
                parts = [Part(1.0, image=rgb), *parts]
            found = ix.search(query=parts, k=k, offset=offset, rerank=steps, min_score=min_score, filters=filters)
        else:
            found = ix.search(rgb, k=k, offset=offset, rotate=rotate, rerank=steps, min_score=min_score,
                              filters=filters)
        return results(found.to_dict())

    @app.get("/search", tags=["search"])
    def search_get(text: Optional[str] = Query(None, max_length=1000), id: Optional[int] = Query(None),
                   q: Optional[str] = COMPOSED, k: int = Query(10, ge=1, le=1000), offset: int = OFFSET,
                   rerank: Optional[str] = RERANK, min_score: Optional[float] = MIN_SCORE,
                   filters: Optional[dict[str, Any]] = Depends(search_filters),
                   ix: Index = Depends(fresh)) -> dict[str, Any]:
        """Search by the text ``text``, by the indexed image ``id`` (find similar) or by a composed
        query ``q``, among the images that pass the filters, ``k`` results from place ``offset`` on."""
        if sum(x is not None for x in (text, id, q)) != 1:
            raise HTTPException(400, "give exactly one of the query parameters 'text', 'id' or 'q' "
                                     "(or POST an image)")
        if text is not None and not text.strip():
            raise HTTPException(400, "empty text query")
        steps = checked_steps(rerank)
        return results(ix.search(text=text, id=id, query=composed(q), k=k, offset=offset, rerank=steps,
                                 min_score=min_score, filters=filters).to_dict())

    def results(found: dict[str, Any]) -> dict[str, Any]:
        found["results"] = thumbs.with_urls(shown.items(found["results"]))
        return found

    # -- images ----------------------------------------------------------------------------------
    @app.get("/filters", tags=["images"])
    def filter_choices(ix: Index = Depends(fresh)) -> dict[str, Any]:
        """What the filters can choose from: folders (as ``folder`` takes them), cameras, file
        types, and the ranges of dates taken and pixel sizes."""
        f = ix.facets()
        f["folders"] = sorted({shown.show_folder(d) for d in f["folders"]})
        return f

    @app.get("/images", tags=["images"])
    def list_images(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=1000),
                    filters: Optional[dict[str, Any]] = Depends(search_filters),
                    ix: Index = Depends(fresh)) -> dict[str, Any]:
        """The indexed images that pass the filters, newest taken first, a page at a time."""
        total, rows = ix.listing(offset, limit, filters)
        return {"total": total, "offset": offset,
                "items": thumbs.with_urls(shown.items({"id": r.id, "path": r.path, "width": r.width, "height": r.height,
                                                       "taken": r.taken, "camera": r.camera, "type": r.type}
                                                      for r in rows))}

    @app.get("/images/{image_id:int}", tags=["images"], response_class=Response,
             responses={200: {"content": {"image/*": {}}}})
    def original(image_id: int) -> Response:
        """The original file of an indexed image, while it is still the file that was indexed
        (same size and content hash); 404 otherwise."""
        row = indexed(image_id)
        data = original_bytes(row)
        kind = mimetypes.guess_type(row.path)[0] or ""
        return Response(data, media_type=kind if kind.startswith("image/") else "application/octet-stream",
                        headers={"Content-Disposition": "inline"})

    @app.get("/thumbs/{image_id:int}", tags=["images"], response_class=Response,
             responses={200: {"content": {THUMB_TYPE: {}}}, 304: {"description": "not modified"}})
    @app.get("/images/{image_id:int}/thumb", tags=["images"], response_class=Response, include_in_schema=False)
    def thumb(image_id: int, request: Request,
              v: Optional[str] = Query(None, max_length=64, description="the content version (as in a "
                                       "result's thumb URL): the answer may then be cached for good")) -> Response:
        """A JPEG thumbnail (long side at most 256 px), made when the image was indexed, with an
        ``ETag`` (``If-None-Match`` gives 304) and caching headers."""
        row = indexed(image_id)
        headers = thumbs.headers(row, v)
        if thumbs.not_modified(row, request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        try:
            data = thumbs.get(row, lambda: original_bytes(row))
        except ImageError as e:
            raise HTTPException(404, f"the file of image {image_id} is no longer readable: {e.reason}") from None
        return Response(data, media_type=THUMB_TYPE, headers=headers)

    adding = threading.Lock()  # the check for known content and the add that follows, one request at a time

    def known_id(u: Upload) -> Optional[int]:
        for digest in u.hashes:
            hit = idx.catalog.by_hash(digest)
            if hit is not None:
                return hit[0]
        return None

    def discard(paths: List[str]) -> None:
        """Take stored uploads out again: their catalog rows (indexed or error), then the files."""
        try:
            rows = [idx.catalog.by_path(p) for p in paths]
            gone = [row.id for row in rows if row is not None]
            if gone:
                idx.remove_ids(gone)
        finally:
            for p in paths:
                Path(p).unlink(missing_ok=True)

    @app.post("/images", status_code=201, tags=["images"], dependencies=[Depends(writer)])
    def add_images(image: List[UploadFile] = File(..., description="one or more image files")) -> JSONResponse:
        """Store uploads under INDEX/uploads/ under their own file names (made safe; ``-2``, ``-3``...
        when taken) and index them: 201 when something new was indexed. An upload whose content is
        already indexed (under any path) is not stored again: its answer is the existing image's id
        (200 when that holds for every upload). When an upload cannot be indexed, none of the
        request's uploads is kept (422)."""
        prepared = []
        for f in image:
            try:
                prepared.append(prepare_upload(read_upload(f), f.filename or "upload"))
            except ImageError as e:
                raise image_error(e) from None
        with adding:
            plan: List[Any] = []  # per upload: the id of the indexed image, or the key of a new one
            new: dict[str, Upload] = {}
            for u in prepared:
                hit = known_id(u)
                if hit is None:
                    new.setdefault(u.hashes[0], u)  # the same content twice in one request: stored once
                plan.append(("id", hit) if hit is not None else ("new", u.hashes[0]))
            stored: dict[str, str] = {}
            try:
                for key, u in new.items():
                    stored[key] = os.path.abspath(store_upload(uploads, u))
                rep = idx.add(list(stored.values())) if stored else None
            except BaseException:
                discard(list(stored.values()))
                raise
            failed = dict(rep.failed) if rep else {}
            rows = {key: idx.catalog.by_path(p) for key, p in stored.items()}
            bad = [key for key, row in rows.items() if row is None or row.status != "ok" or stored[key] in failed]
            if bad:
                discard(list(stored.values()))
                reason = failed.get(stored[bad[0]]) or (rows[bad[0]].error if rows[bad[0]] else None)
                raise HTTPException(422, f"{one_line(new[bad[0]].client_name)}: could not index the upload "
                                         f"({reason or 'not indexed'}); nothing was added")
        ids = [value if kind == "id" else rows[value].id for kind, value in plan]
        added = rep.added if rep else 0
        return JSONResponse({"id": ids[0], "ids": ids, "added": added},
                            status_code=201 if rep and (rep.added or rep.updated) else 200)

    @app.delete("/images/{image_id:int}", status_code=204, tags=["images"], dependencies=[Depends(writer)])
    def delete_image(image_id: int) -> Response:
        """Remove an image from the index; a file the server stored under uploads/ is deleted too."""
        row = indexed(image_id)
        idx.remove_ids([image_id])
        if Path(row.path).resolve().parent == uploads.resolve():
            Path(row.path).unlink(missing_ok=True)
        return Response(status_code=204)

    from lookalike.server.duplicates import add_routes as add_duplicate_routes

    add_duplicate_routes(app, idx, fresh, writer, shown, STATIC)

    # -- explanation -----------------------------------------------------------------------------
    @app.get("/explain", tags=["search"], response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    def explain_match(query_id: int, id: int) -> Response:
        """A PNG of the spatially verified local-feature matches between two indexed images
        (cached in memory, not in the index folder)."""
        if not explain_available():
            raise HTTPException(501, "match explanations are not available in this installation")
        from lookalike.features.local.explain import explain_images

        q, r = indexed(query_id), indexed(id)
        key = (q.id, r.id, q.hash, r.hash)
        png = drawings.get(key)
        if png is None:
            try:
                a, b = (decode(original_bytes(row), f"image {row.id}", max_side=EXPLAIN_SIDE) for row in (q, r))
            except ImageError as e:
                raise HTTPException(404, f"cannot read an image: {e.reason}") from None
            canvas, _ = explain_images(a, b)
            buf = io.BytesIO()
            Image.fromarray(canvas).save(buf, "PNG")
            png = buf.getvalue()
            drawings.put(key, png)
        return Response(png, media_type="image/png")

    return app


class Follower:
    """Follows changes another process makes to the index, checking at most every ``every`` s."""

    def __init__(self, index: Index, every: float) -> None:
        self.index, self.every = index, every
        self.reloads = 0
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def maybe_refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.every or not self._lock.acquire(blocking=False):
            return
        try:
            self._checked = now
            if self.index.refresh():
                self.reloads += 1
        except Exception:  # noqa: BLE001 - keep serving the state we have; retried next time
            log.exception("could not follow the index's changes; serving the previous state")
        finally:
            self._lock.release()
