"""Process-wide settings read from the environment."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where exported models and evaluation features are cached (``LOOKALIKE_CACHE``)."""
    root = os.environ.get("LOOKALIKE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lookalike")
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p
