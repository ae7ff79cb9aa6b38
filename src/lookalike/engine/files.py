"""Which files an indexing run looks at."""
from __future__ import annotations

import fnmatch
import os
from typing import Callable, Iterable, Iterator, Sequence

from lookalike.errors import BadInputError
from lookalike.io import is_image_name


def as_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """One path or many, as absolute paths: a ``str`` or ``Path`` is always one path."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    out = []
    for p in paths:
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        if not isinstance(p, (str, os.PathLike)):
            raise BadInputError(f"a path must be a str or os.PathLike, not {type(p).__name__}")
        out.append(os.path.abspath(os.fspath(p)))
    return out


def walk(paths: Iterable[str | os.PathLike], exclude: Sequence[str] = (),
         on_error: Callable[[str, str], None] | None = None) -> Iterator[str]:
    """Image files under ``paths`` (files are taken as given), sorted, skipping ``exclude`` globs.

    Symlinked folders are not followed (so symlink loops cannot trap the walk); broken links and
    unreadable folders are reported through ``on_error``.
    """
    def excluded(p: str) -> bool:
        return any(fnmatch.fnmatch(p, g) or fnmatch.fnmatch(os.path.basename(p), g) for g in exclude)

    def usable(p: str) -> bool:
        """A name the catalog can keep (SQLite text is UTF-8); others are reported, not indexed."""
        try:
            p.encode("utf-8")
            return True
        except UnicodeEncodeError:
            if on_error:
                on_error(shown(p), "file name is not valid UTF-8: rename the file to index it")
            return False

    for root in paths:
        root = os.path.abspath(os.fspath(root))
        if os.path.isfile(root) or (os.path.islink(root) and not os.path.isdir(root)):
            if not excluded(root) and usable(root):
                yield root
            continue
        if not os.path.isdir(root):
            if on_error:
                on_error(root, "path not found")
            continue

        def onerror(e: OSError) -> None:
            if on_error:
                on_error(e.filename or root, f"cannot list folder ({e.strerror or e})")

        for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
            dirnames[:] = sorted(d for d in dirnames if not excluded(os.path.join(dirpath, d)))
            for fn in sorted(filenames):
                p = os.path.join(dirpath, fn)
                if is_image_name(p) and not excluded(p) and usable(p):
                    yield p


def shown(path: str) -> str:
    """A path as it can be printed, whatever bytes its name holds."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
