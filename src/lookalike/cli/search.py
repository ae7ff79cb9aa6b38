"""``lookalike search``: query an index by image, indexed id, text or a composed query, with filters."""
from __future__ import annotations

import csv
import json
import sys
from typing import Any, List, Optional

import typer
from rich.table import Table

from lookalike.cli.app import app, console, fail, open_index, print_json

FORMATS = ("table", "json", "jsonl", "csv", "paths")
CSV_COLUMNS = ("rank", "score", "id", "path", "width", "height", "taken", "camera", "type")


def parse_box(box: Optional[str]) -> Optional[tuple[int, int, int, int]]:
    if not box:
        return None
    try:
        x, y, w, h = (int(float(v)) for v in box.split(","))
    except ValueError:
        fail(f"--box must be x,y,w,h (got {box!r})")
    if w <= 0 or h <= 0:
        fail("--box width and height must be positive")
    return x, y, w, h


def composed_parts(image: Optional[str], text: Optional[str], id: Optional[int], query: Optional[str],  # noqa: A002
                   like: List[str], unlike: List[str]) -> list[Any]:
    """The parts of a composed query: the query image, text or id first (weight 1), then
    ``--query``'s parts, then every ``--like`` (+) and ``--unlike`` (-), each one part."""
    from lookalike.engine.compose import Part, parse_query

    parts: list[Any] = []
    if image is not None:
        parts.append(Part(1.0, image=image))
    if text is not None:
        parts.append(Part(1.0, text=text))
    if id is not None:
        parts.append(Part(1.0, id=id))
    if query is not None:
        parts += parse_query(query)
    for sign, terms in ((1.0, like), (-1.0, unlike)):
        for term in terms:
            for p in parse_query(term.strip().lstrip("+-").strip() or term):
                p.weight = sign * abs(p.weight)
                parts.append(p)
    return parts


def print_results(res: Any, fmt: str) -> None:
    hits = res.to_dict()["results"]
    if fmt == "json":
        print_json(res.to_dict())
    elif fmt == "jsonl":
        for h in hits:
            sys.stdout.write(json.dumps(h, ensure_ascii=False) + "\n")
    elif fmt == "paths":
        for h in hits:
            sys.stdout.write(h["path"] + "\n")
    elif fmt == "csv":
        out = csv.DictWriter(sys.stdout, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        out.writeheader()
        out.writerows({k: ("" if h.get(k) is None else h[k]) for k in CSV_COLUMNS} for h in hits)
    else:
        table = Table(show_header=True, header_style="bold")
        for col in ("rank", "score", "id", "path"):
            table.add_column(col, justify="right" if col != "path" else "left")
        for h in res.hits:
            table.add_row(str(h.rank), f"{h.score:.4f}", str(h.id), h.path)
        console.print(table)
        console.print(f"{len(res.hits)} results, took {res.took_ms / 1000:.4f} s ({res.took_ms:.1f} ms)")


@app.command("search")
def search_cmd(
    image: Optional[str] = typer.Argument(None, help="Query image file."),
    index: str = typer.Option(..., "--index", "-i", help="Index directory."),
    k: int = typer.Option(10, "-k", min=1, help="Number of results."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many results first (pages)."),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="Search by text instead of an image."),
    id: Optional[int] = typer.Option(None, "--id", help="Search by an indexed image's id."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="A composed query: parts joined by ' + ' "
                                        "and ' - ', each optionally WEIGHT: first; an existing file is an "
                                        "image, #ID an indexed image, anything else text, e.g. "
                                        "'2:golden retriever + pool.jpg - fruit'."),
    like: List[str] = typer.Option([], "--like", help="More like this (an image file, #ID or a text); repeatable."),
    unlike: List[str] = typer.Option([], "--unlike", help="Less like this (an image file, #ID or a text); "
                                     "repeatable."),
    box: Optional[str] = typer.Option(None, help="Describe only this region of the query: x,y,w,h in the "
                                                 "image's pixels (as it is displayed, EXIF rotation applied)."),
    rerank: Optional[str] = typer.Option(None, help="Re-rank steps to add for this query, e.g. dba+aqe, "
                                                    "diffusion, krnn (`lookalike pipelines`)."),
    verify: bool = typer.Option(False, "--verify", help="Spatially verify the top 100 (the sv step): a "
                                "verified result scores its similarity plus up to 1 (40 or more inliers)."),
    rotate: bool = typer.Option(False, "--rotate", help="Also search with the query image turned 90° "
                                                        "each way; each result keeps its best score."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Leave out results scoring below this "
                                              "(text queries: a 0-1 scale, below 0.3 is no match)."),
    folder: Optional[str] = typer.Option(None, "--folder", help="Only images in this folder or its subfolders."),
    date_from: Optional[str] = typer.Option(None, "--date-from", help="Only images taken on or after YYYY-MM-DD "
                                            "(EXIF date, else the file's time)."),
    date_to: Optional[str] = typer.Option(None, "--date-to", help="Only images taken on or before YYYY-MM-DD."),
    camera: Optional[str] = typer.Option(None, "--camera", help="Only images whose camera's name contains this "
                                         "(any case)."),
    min_width: Optional[int] = typer.Option(None, "--min-width", min=0, help="Only images at least this wide."),
    min_height: Optional[int] = typer.Option(None, "--min-height", min=0, help="Only images at least this high."),
    max_width: Optional[int] = typer.Option(None, "--max-width", min=0, help="Only images at most this wide."),
    max_height: Optional[int] = typer.Option(None, "--max-height", min=0, help="Only images at most this high."),
    type_: Optional[str] = typer.Option(None, "--type", help="Only these file types, e.g. jpg,png."),
    keyword: Optional[str] = typer.Option(None, "--keyword", help="Only images whose text has this word "
                                          "(indexes with text)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json, jsonl, csv or paths (one path a "
                                                           "line, for xargs or an image viewer)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON (--format json)."),
) -> None:
    """Rank the indexed images by similarity to a query; prints scores and the time taken."""
    import os

    from lookalike.errors import ImageError

    fmt = "json" if as_json else fmt.lower()
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    composed = query is not None or like or unlike
    if composed and (box or rotate):
        fail("--box and --rotate apply to a single query image, not to a composed query")
    if not composed and sum(x is not None for x in (image, text, id)) != 1:
        fail("give exactly one query: an IMAGE, --text or --id (or compose one with --query, --like, --unlike)")
    filters = {"folder": os.path.abspath(folder) if folder else None, "date_from": date_from,
               "date_to": date_to, "camera": camera, "min_width": min_width, "min_height": min_height,
               "max_width": max_width, "max_height": max_height, "types": type_, "keyword": keyword}
    idx = open_index(index, readonly=True)
    try:
        steps = "+".join(filter(None, ["sv" if verify else None, rerank]))
        if composed:
            parts = composed_parts(image, text, id, query, like, unlike)
            res = idx.search(query=parts, k=k, offset=offset, rerank=steps or None, min_score=min_score,
                             filters=filters)
        else:
            res = idx.search(image, k=k, text=text, id=id, box=parse_box(box), rerank=steps or None,
                             rotate=rotate, min_score=min_score, offset=offset, filters=filters)
    except ImageError as e:
        fail(f"cannot read query image {e}")
    finally:
        idx.close()
    print_results(res, fmt)
