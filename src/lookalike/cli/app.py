"""The Typer app and helpers shared by the command modules."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(
    name="lookalike", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="lookalike: content-based image search. Index a folder, then search it by image or text.",
)
# When piped, do not squeeze paths into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit non-zero (no traceback)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Any]:
    """A Rich progress bar; yields ``update(done, total)``."""
    if not enabled:
        yield lambda done, total: None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err_console, transient=False) as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


# Deep extraction options shared by `index` and `eval` (stored with an index's pipeline settings).
MAX_SIDE = typer.Option(None, "--max-side", min=32, help="Deep pipelines: longer image side fed to the network.")
SCALES = typer.Option(None, "--scales", help="Deep pipelines: scales of the max side, summed, e.g. 1,0.7071,1.4142.")
FLIP = typer.Option(False, "--flip", help="Deep pipelines: also describe the mirrored image and average.")
FOREGROUND = typer.Option(None, "--foreground", help="Deep pipelines: describe only the main object, found from "
                          "the activation mask: scda or cam.")


def extraction_options(max_side: int | None, scales: str | None, flip: bool,
                       foreground: str | None) -> dict[str, Any]:
    """The pipeline options of the shared extraction flags (unset ones left out)."""
    out: dict[str, Any] = {}
    if max_side:
        out["max_side"] = max_side
    if scales:
        try:
            out["scales"] = [float(s) for s in scales.split(",") if s.strip()]
        except ValueError:
            fail(f"--scales must be numbers separated by commas (got {scales!r})")
        if not out["scales"] or min(out["scales"]) <= 0:
            fail("--scales must be positive")
    if flip:
        out["flip"] = True
    if foreground:
        if foreground not in ("scda", "cam"):
            fail(f"--foreground must be scda or cam, not {foreground!r}")
        out["foreground"] = foreground
    return out


def open_index(directory: str, pipeline: str | None = None, options: dict[str, Any] | None = None,
               create: bool = False, store: str | None = None):
    from ..api import Index, IndexError_

    try:
        return Index(directory, pipeline, options, create=create, store=store)
    except IndexError_ as e:
        fail(str(e))
    except KeyError as e:
        fail(str(e).strip("'\""))
