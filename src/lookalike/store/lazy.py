"""FAISS, imported on first use: a process that opens an index only to search its text (or to
read its catalog) never pays for loading it."""
from __future__ import annotations

import importlib
from typing import Any


class _Faiss:
    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("faiss"), name)


faiss: Any = _Faiss()
