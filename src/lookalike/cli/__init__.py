"""The ``lookalike`` command: one Typer app; each command group lives in its own module."""
from __future__ import annotations

import importlib

from .app import app

# Each module adds its commands to ``app`` on import.
for _mod in ("index", "search", "manage", "evaluate"):
    importlib.import_module(f"{__name__}.{_mod}")

# Optional command modules (present when their part is installed).
for _mod in ("serve", "tag", "explain", "optimize", "train"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_mod}":
            raise


def main() -> None:
    app()
