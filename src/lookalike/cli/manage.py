"""``lookalike remove``, ``info`` and ``pipelines``."""
from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from lookalike.cli.app import app, console, fail, open_index, print_json


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
    if n == 0:
        fail("nothing was removed: no indexed file is at or under " + ", ".join(paths))


@app.command("info")
def info_cmd(
    index: str = typer.Option(..., "--index", "-i", help="Index directory."),
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON (with the pipeline document)."),
) -> None:
    """Counts, pipeline, sizes and skipped files (with reasons) of an index."""
    idx = open_index(index, readonly=True)
    try:
        info = idx.info()
    finally:
        idx.close()
    if as_json:
        print_json(info)
        return
    for key in ("index", "pipeline", "description", "images", "errors", "vectors", "dim", "store", "metric",
                "schema_version"):
        console.print(f"[bold]{key}[/]: {info[key]}", highlight=False)
    if info.get("store_factory") not in (None, "flat"):
        console.print(f"[bold]store spec[/]: {info['store_spec']} ({info['store_factory']})", highlight=False)
    tuning = info.get("store_tuning")
    if tuning:
        knobs = ", ".join(f"{k} {v}" for k, v in tuning["params"].items())
        console.print(f"[bold]search tuning[/]: {knobs}: recall@{tuning['k']} {tuning['recall']:.4f} "
                      f"(target {tuning['target']:g}), {tuning['p50_ms']:.2f} ms a query, "
                      f"tuned at {tuning['vectors']:,} vectors on {tuning['tuned_at']}", highlight=False)
    console.print(f"[bold]size on disk[/]: {info['bytes_on_disk'] / 1e6:.1f} MB")
    if info["skipped"]:
        console.print(f"[bold]skipped files[/] ({len(info['skipped'])}):")
        for s in info["skipped"]:
            console.print(f"  {s['path']}: {s['reason']}", highlight=False, soft_wrap=True)


@app.command("pipelines")
def pipelines_cmd(
    spec: Optional[str] = typer.Argument(None, help="A pipeline spec to expand, e.g. 'default+aqe(alpha=3)'."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON: the list, or SPEC's whole document."),
) -> None:
    """List the pipelines and re-rank steps (combine as BASE+STEP+STEP, e.g. default+aqe(alpha=3)),
    or print the document a spec expands to, every default filled."""
    from lookalike.pipelines import expand, list_pipelines

    if spec is not None:
        print_json(expand(spec))
        return
    items = list_pipelines()
    if as_json:
        print_json(items)
        return
    table = Table("name", "kind", "description")
    for it in items:
        table.add_row(it["name"], it["kind"], it["description"])
    console.print(table)
