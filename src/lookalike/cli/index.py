"""``lookalike index``: add folders and files to an index, incrementally."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from lookalike.cli.app import (FLIP, FOREGROUND, MAX_SIDE, SCALES, TURNS, app, console, err_console, extraction_options, fail, open_index,
                  print_json, progress_bar)
from lookalike.cli.watching import DEBOUNCE, RESCAN_EVERY, watch_until_interrupted


@app.command("index")
def index_cmd(
    paths: List[str] = typer.Argument(..., help="Image files or folders to index."),
    index: str = typer.Option(..., "--index", "-i", help="Index directory (created if missing)."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", "-p",
                                           help="Pipeline for a new index (see `lookalike pipelines`); default: default."),
    compare: Optional[str] = typer.Option(None, help="Colour pipeline only: pearson, bhattacharyya, chi2 or cosine."),
    model: Optional[str] = typer.Option(None, "--model", help="A fine-tuned model folder (from `lookalike train`): "
                                        "a new index (pipeline default or gem) uses its GeM descriptor."),
    max_side: Optional[int] = MAX_SIDE,
    scales: Optional[str] = SCALES,
    flip: bool = FLIP,
    turns: bool = TURNS,
    foreground: Optional[str] = FOREGROUND,
    exclude: List[str] = typer.Option([], "--exclude", "-x", help="Glob of files or folders to skip (repeatable)."),
    batch_size: int = typer.Option(32, help="Images per extraction batch."),
    prune: bool = typer.Option(True, help="Remove indexed files under PATHS that no longer exist."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or per-file messages."),
    store: Optional[str] = typer.Option(None, "--store", help="Vector store: auto, flat, hnsw, ivfpq, a FAISS "
                                        "factory string, milvus://HOST:PORT/COLL or milvus:///file.db "
                                        "(a change rebuilds the store from the catalog)."),
    recall: Optional[float] = typer.Option(None, "--recall", help="Recall@10 the auto store tunes its "
                                           "search to (default 0.98): the fastest setting that reaches it."),
    memory_budget: Optional[float] = typer.Option(None, "--memory-budget", help="MB the auto store may "
                                                  "hold in RAM (default 8192): past it, IVF-PQ instead of IVF-Flat."),
    runner: str = typer.Option("local", "--runner", help="Where images are described: local or dask."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address "
                                            "(default: a local cluster on 127.0.0.1)."),
    watch: bool = typer.Option(False, "--watch", help="Then keep watching PATHS: new, changed, moved and "
                               "deleted files are indexed as they happen, until Ctrl-C."),
    debounce: float = DEBOUNCE,
    rescan_every: float = RESCAN_EVERY,
) -> None:
    """Index images: new or changed files are described, unchanged ones skipped, vanished ones removed.

    Unreadable files are skipped with a message naming them and the reason, and recorded in the index.
    An interrupted run leaves an index that opens; running again resumes where it stopped.
    With --watch, the index then follows the folders as they change.
    """
    options = {**{k: v for k, v in (("compare", compare),
                                    ("model", str(Path(model).resolve()) if model else None)) if v},
               **extraction_options(max_side, scales, flip, foreground, turns)} or None
    import os

    from lookalike.engine.runners import RUNNERS, make_runner

    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:  # checked before anything is created
        fail(f"{missing[0]}: path not found" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if runner not in RUNNERS:
        fail(f"unknown runner {runner!r} (known: {', '.join(sorted(RUNNERS))})")
    idx = open_index(index, pipeline, options, create=True, store=store, recall=recall, memory_mb=memory_budget)
    try:  # --scheduler implies the Dask runner
        run = make_runner("dask" if scheduler else runner, scheduler) if runner != "local" or scheduler else None
    except BaseException:
        idx.close()
        raise

    def on_error(path: str, reason: str) -> None:
        if not quiet:
            err_console.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)

    try:
        with progress_bar("indexing", enabled=not quiet and not as_json) as update:
            rep = idx.add(paths, exclude=exclude, batch_size=batch_size, prune=prune, progress=update,
                          on_error=on_error, runner=run)
        if as_json:
            print_json(rep.to_dict())
        else:
            console.print(f"added {rep.added}, updated {rep.updated}, unchanged {rep.unchanged}, "
                          f"removed {rep.removed}, skipped {len(rep.failed)} in {rep.seconds:.1f} s")
        if watch:
            watch_until_interrupted(idx, paths, exclude, batch_size, debounce, rescan_every, quiet, as_json,
                                    on_error)
    except KeyboardInterrupt:
        fail("interrupted: what was indexed so far is kept; run the same command again to resume", 130)
    finally:
        idx.close()
        if run is not None:
            run.close()
