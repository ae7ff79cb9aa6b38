"""The ``lookalike`` command: one Typer app; each command group lives in its own module."""
from __future__ import annotations

import importlib

from lookalike.cli.app import app

# Each module adds its commands to ``app`` on import.
for _mod in ("index", "search", "manage", "evaluate", "duplicates"):
    importlib.import_module(f"{__name__}.{_mod}")

# Optional command modules (present when their part is installed).
for _mod in ("serve", "tag", "explain", "optimize", "train"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_mod}":
            raise


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; ``--debug`` anywhere shows the traceback of an internal error."""
    import os
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        os.environ["LOOKALIKE_DEBUG"] = "1"
        args = [a for a in args if a != "--debug"]
    app(args=args, prog_name="lookalike")
