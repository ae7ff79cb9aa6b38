"""``lookalike optimize``: compact the vector store (drop removed vectors), or move to another store."""
from __future__ import annotations

from typing import Optional

import typer

from lookalike.cli.app import app, console, open_index, print_json


@app.command("optimize")
def optimize_cmd(
    index: str = typer.Option(..., "--index", "-i", help="Index directory."),
    store: Optional[str] = typer.Option(None, "--store", help="Rebuild into this store spec "
                                        "(auto, flat, hnsw, ivfpq, a FAISS factory string, milvus://...)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Rebuild approximate indexes without removed vectors (HNSW tombstones, IVF-PQ dead rows)."""
    idx = open_index(index, store=store)
    try:
        out = idx.writer.compact()
    finally:
        idx.close()
    if as_json:
        print_json(out)
    else:
        console.print(f"{out['store']} ({out['spec']}): {out['vectors']} vectors, "
                      f"{out['dropped']} removed vectors dropped")
