"""The Typer app and helpers shared by the command modules."""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import click
import typer
from rich.console import Console
from typer.core import TyperGroup
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

class ErrorsAsMessages(TyperGroup):
    """The CLI's edge: a ``LookalikeError`` becomes a one-line message (a JSON object on stderr
    under ``--json``) and exit code 1; anything else is a bug: "internal error" and exit code 2,
    with the traceback under ``--debug`` (or ``LOOKALIKE_DEBUG=1``)."""

    def invoke(self, ctx: click.Context) -> Any:
        from lookalike.errors import LookalikeError

        words = [*getattr(ctx, "protected_args", []), *ctx.args]
        as_json = "--json" in words
        show_steps(not (as_json or "--quiet" in words or "-q" in words))
        try:
            return super().invoke(ctx)
        except LookalikeError as e:
            report_error(str(e), as_json)
            raise typer.Exit(1) from None
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
                KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - a bug: said once, shown in full with --debug
            if os.environ.get("LOOKALIKE_DEBUG") == "1":
                raise
            report_error(f"internal error: {type(e).__name__}: {e} (run again with --debug for the "
                         "traceback)", as_json)
            raise typer.Exit(2) from None


def show_steps(enabled: bool) -> None:
    """Long one-off steps (learning a vocabulary, exporting a model, extracting features for
    verification) are logged by the library at INFO; the CLI shows them on stderr."""
    import logging

    logger = logging.getLogger("lookalike")
    for h in list(logger.handlers):
        if getattr(h, "_lookalike_cli", False):
            logger.removeHandler(h)
    if enabled:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._lookalike_cli = True  # type: ignore[attr-defined]
        logger.addHandler(h)
        logger.setLevel(logging.INFO)


def report_error(message: str, as_json: bool) -> None:
    if as_json:
        sys.stderr.write(json.dumps({"error": message}, ensure_ascii=False) + "\n")
    else:
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


app = typer.Typer(
    cls=ErrorsAsMessages,
    name="lookalike", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="lookalike: content-based image search. Index a folder, then search it by image or text.",
)
# When piped, do not squeeze paths into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error (JSON under --json) and exit non-zero (no traceback)."""
    report_error(message, "--json" in sys.argv)
    raise typer.Exit(code)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Any]:
    """A Rich progress bar; yields ``update(done, total)``. Nothing is drawn until the first
    update, so a run with nothing to do shows no empty bar."""
    if not enabled:
        yield lambda done, total: None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err_console, transient=False, auto_refresh=False) as prog:
        task: list[Any] = []

        def update(done: int, total: int) -> None:
            if not task:
                task.append(prog.add_task(description, total=total))
            prog.update(task[0], completed=done, total=total, refresh=True)

        yield update


# Deep extraction options shared by `index` and `eval` (stored with an index's pipeline settings).
MAX_SIDE = typer.Option(None, "--max-side", min=32, help="Deep pipelines: longer image side fed to the network.")
SCALES = typer.Option(None, "--scales", help="Deep pipelines: scales of the max side, summed, e.g. 1,0.7071,1.4142.")
FLIP = typer.Option(False, "--flip", help="Deep pipelines: also describe the mirrored image and average.")
TURNS = typer.Option(False, "--turns", help="Deep pipelines: also describe the image turned 90, 180 and 270 "
                     "degrees and average (for images without an up: aerial photos, textures).")
FOREGROUND = typer.Option(None, "--foreground", help="Deep pipelines: describe only the main object, found from "
                          "the activation mask: scda or cam.")


def extraction_options(max_side: int | None, scales: str | None, flip: bool,
                       foreground: str | None, turns: bool = False) -> dict[str, Any]:
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
    if turns:
        out["turns"] = True
    if foreground:
        if foreground not in ("scda", "cam"):
            fail(f"--foreground must be scda or cam, not {foreground!r}")
        out["foreground"] = foreground
    return out


def open_index(directory: str, pipeline: str | None = None, options: dict[str, Any] | None = None,
               create: bool = False, store: str | None = None, readonly: bool = False,
               recall: float | None = None, memory_mb: float | None = None):
    """The index for a command (errors reach ``cli.main`` as one-line messages)."""
    from lookalike.engine.index import Index

    return Index(directory, pipeline, options, create=create, store=store, readonly=readonly,
                 recall=recall, memory_mb=memory_mb)
