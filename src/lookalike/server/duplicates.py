"""The duplicates endpoints and review page: ``GET /duplicates`` (groups, each with a suggested file
to keep), ``POST /duplicates/remove`` (behind the write token: move chosen files out of the
collection into ``INDEX/duplicates-removed/``, journaled, and forget them) and ``/duplicates/review``.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, List, Optional

from fastapi import Body, Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse

from lookalike.engine.duplicates import KEEP_POLICIES, PRESETS, DuplicateReport
from lookalike.engine.index import Index
from lookalike.engine.relocate import move_files

REMOVED_FOLDER = "duplicates-removed"
KEPT_REPORTS = 4


def add_routes(app: FastAPI, idx: Index, fresh: Callable[[], Index], writer: Callable[..., None],
               shown: Any, static: Path) -> None:
    reports: dict[tuple, DuplicateReport] = {}
    computing = threading.Lock()

    def report_for(preset: str, threshold: Optional[float], keep: str) -> DuplicateReport:
        key = (idx.generation, preset, threshold, keep)
        with computing:  # one search at a time; the same question is answered from memory
            if key not in reports:
                while len(reports) >= KEPT_REPORTS:
                    reports.pop(next(iter(reports)))
                reports[key] = idx.duplicates(preset, threshold, keep)
            return reports[key]

    @app.get("/duplicates/review", include_in_schema=False)
    def review_page() -> FileResponse:
        return FileResponse(static / "duplicates.html", media_type="text/html")

    @app.get("/duplicates", tags=["duplicates"])
    def duplicates(preset: str = Query("edited", description=", ".join(PRESETS)),
                   threshold: Optional[float] = Query(None, ge=0, le=1, description="verified score a copy needs"),
                   keep: str = Query("resolution", description=", ".join(KEEP_POLICIES)),
                   ix: Index = Depends(fresh)) -> dict[str, Any]:
        """Groups of duplicates and copies: members with sizes, dates, the kind and score of their
        match with the group's centre, and a suggested action (keep or remove)."""
        out = report_for(preset, threshold, keep).to_dict()
        out["timings"] = {k: v for k, v in out["timings"].items() if isinstance(v, float)}
        for g in out["groups"]:
            g["members"] = shown.items(g["members"])
        return out

    @app.post("/duplicates/remove", tags=["duplicates"], dependencies=[Depends(writer)])
    def remove(ids: List[int] = Body(..., embed=True, description="indexed images to move out of the collection"),
               ix: Index = Depends(fresh)) -> dict[str, Any]:
        """Move these files into the index folder's ``duplicates-removed/`` (journaled: a file is
        always at its old place or its new one) and remove them from the index. Only members of
        a current duplicate group, never every member of a group, and only files unchanged since
        they were indexed."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            raise HTTPException(400, "no ids given")
        groups = [g for r in list(reports.values()) if r for g in r.groups] or report_for("edited", None, "resolution").groups
        member = {m.id: g for g in groups for m in g.members}
        unknown = [i for i in wanted if i not in member]
        if unknown:
            raise HTTPException(409, f"image {unknown[0]} is in no duplicate group (reload the groups)")
        for g in {id(member[i]): member[i] for i in wanted}.values():
            if all(m.id in wanted for m in g.members):
                raise HTTPException(409, "every image of a group would be removed: keep at least one")
        rows = ix.catalog.rows(wanted)
        ready = []
        for i in wanted:
            r = rows.get(i)
            try:
                st = os.stat(r.path) if r else None
            except OSError:
                st = None
            if r is None or st is None or (st.st_size, st.st_mtime) != (r.size, r.mtime):
                raise HTTPException(409, f"image {i} changed or vanished since it was indexed; nothing was moved")
            ready.append(r)
        rep = move_files([r.path for r in ready], ix.dir / REMOVED_FOLDER)
        moved = {src for src, _ in rep.moved}
        gone = [r.id for r in ready if os.path.abspath(r.path) in moved]
        ix.remove_ids(gone)
        reports.clear()
        return {"moved": len(gone), "ids": gone, "folder": REMOVED_FOLDER}
