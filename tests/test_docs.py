"""docs/ARCHITECTURE.md names only modules that exist."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "lookalike"
TOKEN = re.compile(r"`([a-z_]+(?:/[a-z_]+)*(?:\.py|/))`")


def missing_modules(text: str) -> list[str]:
    """Backticked module paths (``engine/writer.py``, ``features/``) that do not exist under
    src/lookalike; a bare ``x.py`` after ``folder/y.py`` on the same line is ``folder/x.py``."""
    missing = []
    for line in text.splitlines():
        folder = None
        for tok in TOKEN.findall(line):
            if tok.startswith(("docs/", "tests/", "bench/", "scripts/", "src/")):
                continue
            if "/" in tok.rstrip("/"):
                folder = tok.rsplit("/", 1)[0] if tok.endswith(".py") else tok.rstrip("/")
                path = SRC / tok
            elif tok.endswith(".py") and folder and not (SRC / tok).exists():
                path = SRC / folder / tok
            else:
                path = SRC / tok
            if not path.exists():
                missing.append(tok)
    return missing


def test_every_module_the_architecture_names_exists():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert len(TOKEN.findall(text)) > 40
    assert missing_modules(text) == []
    assert missing_modules("| `engine/nosuch.py` | ... |") == ["engine/nosuch.py"]  # the check can fail
