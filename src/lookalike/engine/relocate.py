"""Moving files out of the way (duplicates) so that a kill at any moment loses none of them.

Every move is written to a journal in the destination folder before it starts and marked done
after it; each file moves by one ``rename`` on the same file system, or across file systems by a
copy to a temporary name, an fsync, a rename into place and only then the removal of the source.
So at any instant each file is at its old place, at its new one, or (across file systems, between
the last two steps) at both: never lost. Running the same move again finishes an interrupted one.
Moving to the trash uses ``send2trash`` (the desktop's trash, itself a rename).
"""
from __future__ import annotations

import filecmp
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from lookalike.errors import BadInputError

JOURNAL = ".lookalike-moves.jsonl"


@dataclass
class MoveReport:
    moved: list[tuple[str, str]] = field(default_factory=list)  # (from, to)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _common_root(paths: Sequence[str]) -> str:
    if len(paths) == 1:
        return os.path.dirname(paths[0])
    return os.path.commonpath([os.path.dirname(p) for p in paths])


def plan_moves(paths: Sequence[str], dest: str | os.PathLike) -> list[tuple[str, str]]:
    """(source, target) for each file: its path under ``dest`` relative to the files' common
    folder, so names never collide; a target already taken by another file gets ``-2``, ``-3``..."""
    paths = [os.path.abspath(p) for p in paths]
    if not paths:
        return []
    dest = os.path.abspath(os.fspath(dest))
    root = _common_root(paths)
    taken: set[str] = set()
    out = []
    for p in paths:
        target = os.path.join(dest, os.path.relpath(p, root))
        stem, ext = os.path.splitext(target)
        n = 1
        while target in taken or (os.path.lexists(target) and not _same_file(p, target)):
            n += 1
            target = f"{stem}-{n}{ext}"
        taken.add(target)
        out.append((p, target))
    return out


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def move_one(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` (which must not exist): a rename, or copy + fsync + rename + unlink."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)  # fails when dst exists: never overwrite
        os.unlink(src)
        return
    except OSError as e:
        if os.path.lexists(dst) and not _same_file(src, dst):
            raise BadInputError(f"{dst}: already exists") from e
        if os.path.lexists(dst):  # a hard link made before a kill: finish
            os.unlink(src)
            return
    part = dst + ".lookalike-part"
    with open(src, "rb") as fi, open(part, "wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())
    shutil.copystat(src, part)
    os.rename(part, dst)
    _fsync_dir(os.path.dirname(dst))
    os.unlink(src)


def move_files(paths: Sequence[str], dest: str | os.PathLike, refuse_under: Sequence[str] = (),
               after_each: Callable[[str, str], None] | None = None) -> MoveReport:
    """Move ``paths`` under ``dest`` (``plan_moves``), journaled; files under ``refuse_under``
    folders are never moved."""
    dest = os.path.abspath(os.fspath(dest))
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise BadInputError(f"{dest}: not a folder")
    os.makedirs(dest, exist_ok=True)
    rep = MoveReport()
    todo = []
    for p in paths:
        p = os.path.abspath(p)
        if _under(p, refuse_under):
            rep.skipped.append((p, "under a reference folder"))
        elif not os.path.lexists(p):
            rep.skipped.append((p, "file not found"))
        elif _under(p, [dest]):
            rep.skipped.append((p, "already in the destination"))
        else:
            todo.append(p)
    journal = os.path.join(dest, JOURNAL)
    plan = plan_moves(todo, dest)
    with open(journal, "a", encoding="utf-8") as j:
        for src, dst in plan:
            j.write(json.dumps({"move": src, "to": dst}) + "\n")
        j.flush()
        os.fsync(j.fileno())
        for src, dst in plan:
            move_one(src, dst)
            j.write(json.dumps({"done": src, "to": dst}) + "\n")
            j.flush()
            rep.moved.append((src, dst))
            if after_each:
                after_each(src, dst)
    return rep


def unfinished(dest: str | os.PathLike) -> list[tuple[str, str]]:
    """Moves the journal in ``dest`` lists as started but not done (a killed run)."""
    journal = os.path.join(os.fspath(dest), JOURNAL)
    if not os.path.exists(journal):
        return []
    started: dict[str, str] = {}
    with open(journal, encoding="utf-8") as j:
        for line in j:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed write
                continue
            if "move" in rec:
                started[rec["move"]] = rec["to"]
            elif "done" in rec:
                started.pop(rec["done"], None)
    return list(started.items())


def finish(dest: str | os.PathLike) -> MoveReport:
    """Complete the unfinished moves of a killed run (a file already moved is left there)."""
    rep = MoveReport()
    for src, dst in unfinished(dest):
        if os.path.lexists(src):
            if (os.path.lexists(dst) and not _same_file(src, dst) and os.path.isfile(dst)
                    and filecmp.cmp(src, dst, shallow=False)):
                os.unlink(src)  # killed between a copy's rename into place and the source's removal
            else:
                move_one(src, dst)
            rep.moved.append((src, dst))
        elif os.path.lexists(dst):
            rep.moved.append((src, dst))
        else:
            rep.skipped.append((src, "found neither at its old nor its new place"))
    if rep.moved or rep.skipped:
        with open(os.path.join(os.fspath(dest), JOURNAL), "a", encoding="utf-8") as j:
            for src, dst in rep.moved:
                j.write(json.dumps({"done": src, "to": dst}) + "\n")
    return rep


def trash_files(paths: Iterable[str], refuse_under: Sequence[str] = ()) -> MoveReport:
    """Send files to the desktop's trash (``send2trash``); reference folders are refused."""
    from send2trash import send2trash

    rep = MoveReport()
    for p in paths:
        p = os.path.abspath(p)
        if _under(p, refuse_under):
            rep.skipped.append((p, "under a reference folder"))
            continue
        if not os.path.lexists(p):
            rep.skipped.append((p, "file not found"))
            continue
        send2trash(p)
        rep.moved.append((p, "trash"))
    return rep


def _under(path: str, roots: Sequence[str]) -> bool:
    path = os.path.abspath(path)
    for r in roots:
        r = os.path.abspath(os.fspath(r))
        if path == r or path.startswith(r.rstrip(os.sep) + os.sep):
            return True
    return False

