"""``lookalike explain``: draw the verified local-feature matches between a query and a result."""
from __future__ import annotations

from typing import Optional

import typer

from lookalike.cli.app import app, console, fail, open_index, print_json


@app.command("explain")
def explain_cmd(
    query: str = typer.Argument(..., help="Query image file."),
    result: str = typer.Argument(..., help="Result image file, or its id in --index."),
    index: Optional[str] = typer.Option(None, "--index", "-i", help="Index directory (to name RESULT by id)."),
    out: str = typer.Option("explain.png", "--out", "-o", help="PNG file to write."),
    kind: str = typer.Option("sift", help="Local features: sift, orb or xfeat."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Match local features, keep the geometrically consistent ones, and draw them side by side."""
    from lookalike.features.local.explain import explain
    from lookalike.io import ImageError

    path = result
    if index is not None and result.isdigit():
        idx = open_index(index, readonly=True)
        try:
            row = idx.catalog.get(int(result))
        finally:
            idx.close()
        if row is None:
            fail(f"no indexed image with id {result}")
        path = row.path
    try:
        n = explain(query, path, out, kind=kind)
    except ImageError as e:
        fail(f"cannot read image {e}")
    except OSError as e:
        fail(f"cannot write {out}: {e.strerror or e}")
    if as_json:
        print_json({"inliers": n, "out": out, "result": path})
    else:
        console.print(f"{n} inlier matches drawn to {out}")
