"""How the server shows the paths of indexed files to its clients.

``relative`` (the default): relative to the common parent folder of the indexed files, so that a
client learns the collection's layout, not the server's folders; files the server stored from
uploads show as ``uploads/NAME``. ``absolute``: the paths as the catalog keeps them.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable

from lookalike.engine.catalog import Catalog

MODES = ("relative", "absolute")


class PathView:
    def __init__(self, catalog: Catalog, index_dir: str, mode: str = "relative") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown path display {mode!r} (known: {', '.join(MODES)})")
        self.catalog, self.mode = catalog, mode
        self.index_dir = os.path.abspath(index_dir)
        self.uploads = os.path.join(self.index_dir, "uploads")
        self._root: tuple[int, str | None] = (-1, None)  # (catalog generation, common parent)
        self._lock = threading.Lock()

    def root(self) -> str | None:
        """The common parent folder of the catalog's files outside the uploads folder (errors
        included), recomputed when the catalog's generation moves."""
        generation = self.catalog.generation()
        seen, root = self._root
        if seen == generation:
            return root
        with self._lock:
            prefix = self.uploads + os.sep
            like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            lo, hi = self.catalog.db.execute(
                "SELECT MIN(path), MAX(path) FROM images WHERE path NOT LIKE ? ESCAPE '\\'", (like,)).fetchone()
            # the common prefix of the smallest and largest path is the common prefix of all of them
            root = os.path.commonpath([os.path.dirname(lo), os.path.dirname(hi)]) if lo and hi else None
            self._root = (generation, root)
            return root

    def show(self, path: str, root: str | None = None) -> str:
        if self.mode == "absolute" or not path:
            return path
        if path.startswith(self.uploads + os.sep):
            return "uploads/" + os.path.relpath(path, self.uploads)
        root = root if root is not None else self.root()
        if root and (path == root or path.startswith(root.rstrip(os.sep) + os.sep)):
            return os.path.relpath(path, root)
        return os.path.basename(path)

    def show_folder(self, folder: str) -> str:
        """A folder as the ``folder`` filter takes it back (``.`` for the common folder)."""
        if self.mode == "absolute":
            return folder
        if folder == self.uploads or folder.startswith(self.uploads + os.sep):
            return "uploads" + folder[len(self.uploads):]
        root = self.root()
        if root and (folder == root or folder.startswith(root.rstrip(os.sep) + os.sep)):
            return os.path.relpath(folder, root)
        return folder

    def folder(self, shown: str) -> str:
        """The absolute folder a client's ``folder`` names (shown as ``show_folder`` shows it)."""
        if self.mode == "absolute":
            return shown
        rel = os.path.normpath(shown.strip().strip("/") or ".")
        if rel == "uploads" or rel.startswith("uploads" + os.sep):
            return os.path.join(self.index_dir, rel)
        return os.path.normpath(os.path.join(self.root() or self.index_dir, rel))

    def items(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Copies of ``rows`` with their ``path`` shown."""
        root = self.root() if self.mode != "absolute" else None
        return [{**r, "path": self.show(r["path"], root)} for r in rows]

    def text(self, message: str) -> str:
        """A message with the server's folders taken out (for error details)."""
        if self.mode == "absolute":
            return message
        message = message.replace(self.uploads + os.sep, "uploads/")
        root = self.root()
        if root and root != os.sep:
            message = message.replace(root.rstrip(os.sep) + os.sep, "")
        return message.replace(self.index_dir, "the index")
