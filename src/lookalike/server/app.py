"""The HTTP API and web page of an index (FastAPI). Build it with ``create_app(index_dir, token=...)``.

Reads (search, images, thumbnails, stats) are open; writes (``POST /images``, ``DELETE /images/ID``)
need ``Authorization: Bearer TOKEN``. Only files the catalog lists are ever served, looked up by id.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
import secrets
import tempfile
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

from lookalike.version import __version__
from lookalike.engine.catalog import ImageRow
from lookalike.engine.index import Index
from lookalike.errors import BadInputError, BusyError, ImageError, LookalikeError
from lookalike.io import decode
from lookalike.pipelines import parse_steps, rerankers
from lookalike.server.guards import BodyLimit, SecurityHeaders, token_ok
from lookalike.server.media import atomic_write, save_upload, thumbnail

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MULTIPART_SLACK = 64 * 1024  # multipart framing around an upload of the maximum size


def explain_available() -> bool:
    return importlib.util.find_spec("lookalike.features.local.explain") is not None


def image_error(e: ImageError) -> HTTPException:
    """400 for images refused by size (decompression bombs), 422 for anything that is no image."""
    big = "bomb" in e.reason or "too large" in e.reason
    return HTTPException(400 if big else 422, f"not a usable image: {e.reason}")


def create_app(index_dir: str | os.PathLike, token: str | None = None, cors: Optional[List[str]] = None,
               max_upload_mb: float = 20.0, reload_every: float = 2.0) -> FastAPI:
    """The app serving the index in ``index_dir`` (which must exist). ``token`` guards writes
    (generated when None: read it from ``app.state.token``). Raises ``NotFoundError`` without an
    index. Searches run concurrently with the index's one writer (``engine.index``); changes made
    by another process are followed at most every ``reload_every`` seconds."""
    idx = Index(index_dir, create=False)
    follower = Follower(idx, reload_every)
    idx.pipeline.describe([np.full((64, 64, 3), 128, np.uint8)])  # models built before concurrent queries
    max_bytes = int(max_upload_mb * 1024 * 1024)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        idx.close()

    app = FastAPIOffline(title="lookalike", version=__version__, lifespan=lifespan,
                  description="Content-based image search: by image, by indexed image, by text.")
    app.state.index, app.state.token, app.state.max_bytes = idx, token or secrets.token_urlsafe(24), max_bytes
    app.state.follower = follower

    @app.exception_handler(LookalikeError)
    async def lookalike_error(_: Request, e: LookalikeError) -> JSONResponse:
        headers = {"Retry-After": "5"} if isinstance(e, BusyError) else None
        return JSONResponse({"detail": str(e)}, status_code=e.http_status, headers=headers)

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
        info.update(explain=explain_available(), max_upload_bytes=max_bytes, reloads=follower.reloads)
        return info

    # -- search ----------------------------------------------------------------------------------
    # in a query string "+" arrives as a space: "dba+aqe", "dba%2Baqe" and "dba,aqe" all work
    RERANK = Query(None, max_length=200, pattern=r"^[a-z0-9-]+(\([a-z0-9_.,=-]*\))?([+ ,][a-z0-9-]+(\([a-z0-9_.,=-]*\))?)*$",
                   description="re-rank steps for this query, e.g. aqe, dba+aqe, diffusion, sv, aqe(alpha=3)")

    def checked_steps(rerank: Optional[str]) -> Optional[str]:
        steps = parse_steps(rerank or "")
        known = rerankers()
        unknown = [s.name for s in steps if s.name not in known]
        if unknown:
            raise BadInputError(f"unknown re-rank step {unknown[0]!r} (known: {', '.join(known.names())})")
        return "+".join(s.to_spec() for s in steps) or None

    @app.post("/search", tags=["search"])
    def search_image(image: UploadFile = File(..., description="the query image"),
                     k: int = Query(10, ge=1, le=1000),
                     rotate: bool = Query(False, description="also search with the image turned 90° each way"),
                     rerank: Optional[str] = RERANK,
                     ix: Index = Depends(fresh)) -> dict[str, Any]:
        """The k indexed images most similar to an uploaded image."""
        steps = checked_steps(rerank)
        data = read_upload(image)
        try:
            rgb = decode(data, image.filename or "<upload>")
        except ImageError as e:
            raise image_error(e) from None
        return ix.search(rgb, k=k, rotate=rotate, rerank=steps).to_dict()

    @app.get("/search", tags=["search"])
    def search_get(text: Optional[str] = Query(None, max_length=1000), id: Optional[int] = Query(None),
                   k: int = Query(10, ge=1, le=1000), rerank: Optional[str] = RERANK,
                   ix: Index = Depends(fresh)) -> dict[str, Any]:
        """Search by the text ``text`` or by the indexed image ``id``."""
        if (text is None) == (id is None):
            raise HTTPException(400, "give exactly one of the query parameters 'text' or 'id' "
                                     "(or POST an image)")
        if text is not None and not text.strip():
            raise HTTPException(400, "empty text query")
        steps = checked_steps(rerank)
        return ix.search(text=text, id=id, k=k, rerank=steps).to_dict()

    # -- images ----------------------------------------------------------------------------------
    @app.get("/images", tags=["images"])
    def list_images(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=1000),
                    ix: Index = Depends(fresh)) -> dict[str, Any]:
        """The indexed images by id, a page at a time."""
        rows = ix.catalog.db.execute("SELECT id, path, width, height FROM images WHERE status='ok' "
                                     "ORDER BY id LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return {"total": ix.catalog.counts()["ok"], "offset": offset,
                "items": [{"id": i, "path": p, "width": w, "height": h} for i, p, w, h in rows]}

    @app.get("/images/{image_id:int}", tags=["images"])
    def original(image_id: int) -> FileResponse:
        """The original file of an indexed image."""
        row = indexed(image_id)
        if not os.path.isfile(row.path):
            raise HTTPException(404, f"the file of image {image_id} is no longer there")
        return FileResponse(row.path, headers={"Content-Disposition": "inline"})

    @app.get("/images/{image_id:int}/thumb", tags=["images"])
    def thumb(image_id: int) -> FileResponse:
        """A JPEG thumbnail (longest side 256 px), cached in the index folder."""
        row = indexed(image_id)
        try:
            path = thumbnail(idx.dir / "thumbs", image_id, row.hash, row.path)
        except ImageError as e:
            raise HTTPException(404, f"the file of image {image_id} is no longer readable: {e.reason}") from None
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/images", status_code=201, tags=["images"], dependencies=[Depends(writer)])
    def add_images(image: List[UploadFile] = File(..., description="one or more image files")) -> JSONResponse:
        """Store uploads under INDEX/uploads/ (named by content hash) and index them.
        201 when something new was indexed, 200 when every upload was already there."""
        paths = []
        for f in image:
            try:
                paths.append(str(save_upload(idx.dir / "uploads", read_upload(f), f.filename or "<upload>")))
            except ImageError as e:
                raise image_error(e) from None
        rep = idx.add(paths)
        failed = dict(rep.failed)
        ids = []
        for p in paths:
            row = idx.catalog.by_path(p)
            if p in failed or row is None or row.status != "ok":
                raise HTTPException(422, f"could not index the upload: {failed.get(p, 'unknown error')}")
            ids.append(row.id)
        return JSONResponse({"id": ids[0], "ids": ids, "added": rep.added},
                            status_code=201 if rep.added or rep.updated else 200)

    @app.delete("/images/{image_id:int}", status_code=204, tags=["images"], dependencies=[Depends(writer)])
    def delete_image(image_id: int) -> Response:
        """Remove an image from the index; a file the server stored under uploads/ is deleted too."""
        row = indexed(image_id)
        idx.remove_ids([image_id])
        uploads = (idx.dir / "uploads").resolve()
        if Path(row.path).resolve().parent == uploads:
            Path(row.path).unlink(missing_ok=True)
        return Response(status_code=204)

    # -- explanation -----------------------------------------------------------------------------
    @app.get("/explain", tags=["search"], response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    def explain_match(query_id: int, id: int) -> Response:
        """A PNG of the spatially verified local-feature matches between two indexed images."""
        if not explain_available():
            raise HTTPException(501, "match explanations are not available in this installation")
        from lookalike.features.local.explain import explain

        q, r = indexed(query_id), indexed(id)
        out = idx.dir / "explain" / f"{q.id}-{r.id}-{(q.hash or '')[:10]}-{(r.hash or '')[:10]}.png"
        if not out.exists():
            with tempfile.TemporaryDirectory(dir=idx.dir) as tmp:
                try:
                    explain(q.path, r.path, Path(tmp) / "m.png")
                except ImageError as e:
                    raise HTTPException(404, f"cannot read an image: {e}") from None
                atomic_write(out, (Path(tmp) / "m.png").read_bytes())
        return FileResponse(out, media_type="image/png")

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
