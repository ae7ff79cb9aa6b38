"""Watching folders from the command line (``index --watch``): one line per write, Ctrl-C stops."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import typer

from lookalike.cli.app import console, err_console, print_json

DEBOUNCE = typer.Option(1.0, "--debounce", min=0.0, help="Watch: seconds of quiet before changes are indexed "
                        "(at most 10 s while changes keep coming).")
RESCAN_EVERY = typer.Option(300.0, "--rescan-every", min=1.0, help="Watch: seconds between full rescans that "
                            "catch changes the file-system events missed.")


def report_line(rep: Any, as_json: bool) -> None:
    if as_json:
        print_json({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **rep.to_dict()})
    else:
        console.print(f"{time.strftime('%H:%M:%S')} added {rep.added}, updated {rep.updated}, "
                      f"removed {rep.removed}, skipped {len(rep.failed)}", highlight=False)


def watch_until_interrupted(idx: Any, paths: Sequence[str], exclude: Sequence[str], batch_size: int,
                            debounce: float, rescan_every: float, quiet: bool, as_json: bool,
                            on_error: Callable[[str, str], None] | None = None) -> None:
    """Keep ``idx`` in step with ``paths`` until Ctrl-C (the write in progress ends after its
    current batch; a second Ctrl-C stops at once, which the index survives like any kill)."""
    from lookalike.engine.watch import Watcher

    watcher = Watcher(idx, paths, exclude, debounce=debounce, rescan_every=rescan_every, batch_size=batch_size,
                      on_report=lambda rep: report_line(rep, as_json), on_error=on_error).start()
    while not watcher.ready.wait(0.2):
        if not watcher.running:
            break
    if watcher.error is not None:
        raise watcher.error
    if not quiet and not as_json:
        console.print(f"watching {', '.join(paths)} (Ctrl-C stops)", highlight=False, soft_wrap=True)
    try:
        while watcher.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        if not quiet and not as_json:
            err_console.print("stopping: finishing the current batch...")
        watcher.stop(timeout=None)
    if watcher.error is not None:
        raise watcher.error
    if not quiet and not as_json:
        console.print("stopped watching; the index is saved", highlight=False)
