"""``lookalike search``: query an index by image, indexed id or text."""
from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from lookalike.cli.app import app, console, fail, open_index, print_json


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


@app.command("search")
def search_cmd(
    image: Optional[str] = typer.Argument(None, help="Query image file."),
    index: str = typer.Option(..., "--index", "-i", help="Index directory."),
    k: int = typer.Option(10, "-k", min=1, help="Number of results."),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="Search by text instead of an image."),
    id: Optional[int] = typer.Option(None, "--id", help="Search by an indexed image's id."),
    box: Optional[str] = typer.Option(None, help="Describe only this region of the query: x,y,w,h."),
    rerank: Optional[str] = typer.Option(None, help="Re-rank steps to add for this query, e.g. dba+aqe, "
                                                    "diffusion, krnn (`lookalike pipelines`)."),
    verify: bool = typer.Option(False, "--verify", help="Spatially verify the top 100 (the sv step): a "
                                "verified result scores its similarity plus up to 1 (40 or more inliers)."),
    rotate: bool = typer.Option(False, "--rotate", help="Also search with the query image turned 90° "
                                                        "each way; each result keeps its best score."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Leave out results scoring below this "
                                              "(text queries: a 0-1 scale, below 0.3 is no match)."),
    as_json: bool = typer.Option(False, "--json", help="Print results as JSON."),
) -> None:
    """Rank the indexed images by similarity to a query; prints scores and the time taken."""
    from lookalike.errors import ImageError

    if sum(x is not None for x in (image, text, id)) != 1:
        fail("give exactly one query: an IMAGE, --text or --id")
    idx = open_index(index, readonly=True)
    try:
        steps = "+".join(filter(None, ["sv" if verify else None, rerank]))
        res = idx.search(image, k=k, text=text, id=id, box=parse_box(box), rerank=steps or None,
                         rotate=rotate, min_score=min_score)
    except ImageError as e:
        fail(f"cannot read query image {e}")
    finally:
        idx.close()
    if as_json:
        print_json(res.to_dict())
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("rank", "score", "id", "path"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for h in res.hits:
        table.add_row(str(h.rank), f"{h.score:.4f}", str(h.id), h.path)
    console.print(table)
    console.print(f"{len(res.hits)} results, took {res.took_ms / 1000:.4f} s ({res.took_ms:.1f} ms)")
