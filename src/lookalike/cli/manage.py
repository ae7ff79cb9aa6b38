"""``lookalike remove``, ``info`` and ``pipelines``."""
from __future__ import annotations

from typing import List

import typer
from rich.table import Table

from .app import app, console, open_index, print_json


@app.command("remove")
def remove_cmd(
    paths: List[str] = typer.Argument(..., help="Indexed files, or folders whose files to remove."),
    index: str = typer.Option(..., "--index", "-i", help="Index directory."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Remove images from an index (the files themselves are not touched)."""
    idx = open_index(index)
    try:
        n = idx.remove(paths)
    finally:
        idx.close()
    print_json({"removed": n}) if as_json else console.print(f"removed {n}")


@app.command("info")
def info_cmd(
    index: str = typer.Option(..., "--index", "-i", help="Index directory."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Counts, pipeline, sizes and skipped files (with reasons) of an index."""
    idx = open_index(index)
    try:
        info = idx.info()
    finally:
        idx.close()
    if as_json:
        print_json(info)
        return
    for key in ("index", "pipeline", "description", "images", "errors", "vectors", "dim", "store", "metric"):
        console.print(f"[bold]{key}[/]: {info[key]}", highlight=False)
    console.print(f"[bold]size on disk[/]: {info['bytes_on_disk'] / 1e6:.1f} MB")
    if info["skipped"]:
        console.print(f"[bold]skipped files[/] ({len(info['skipped'])}):")
        for s in info["skipped"]:
            console.print(f"  {s['path']}: {s['reason']}", highlight=False, soft_wrap=True)


@app.command("pipelines")
def pipelines_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the pipelines and re-rank steps (combine as BASE+STEP+STEP, e.g. default+aqe)."""
    from ..pipeline import list_pipelines

    items = list_pipelines()
    if as_json:
        print_json(items)
        return
    table = Table("name", "kind", "description")
    for it in items:
        table.add_row(it["name"], it["kind"], it["description"])
    console.print(table)
