"""``lookalike duplicates``: groups of duplicates and copies, a suggested file to keep in each,
and (only with ``--yes``) moving the others away or to the trash."""
from __future__ import annotations

import csv
import io
import os
import sys
from typing import Any, List, Optional

import typer
from rich.table import Table

from lookalike.cli.app import app, console, err_console, fail, open_index, print_json, progress_bar

PRESET = typer.Option("edited", "--preset", help="exact: same bytes or pixels; near: also resized, re-compressed, "
                      "turned or mirrored copies; edited: also crops, recolourings, borders, captions.")


@app.command("duplicates")
def duplicates_cmd(
    index: str = typer.Option(..., "--index", "-i", help="Index directory."),
    preset: str = PRESET,
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0,
                                              help="Verified score a copy needs (default: the preset's)."),
    keep: str = typer.Option("resolution", "--keep", help="Which file to keep: resolution, size, oldest, newest, "
                             "shortest-path."),
    reference: List[str] = typer.Option([], "--reference", help="A folder whose files are always kept (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the groups as JSON."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="Write one row per group member to this file ('-': stdout)."),
    sheet: Optional[str] = typer.Option(None, "--contact-sheet", help="Draw the groups into this PNG."),
    move_to: Optional[str] = typer.Option(None, "--move-to", help="Move the files suggested for removal under this folder."),
    trash: bool = typer.Option(False, "--trash", help="Send the files suggested for removal to the trash."),
    yes: bool = typer.Option(False, "--yes", help="Really move or trash them (without it: a dry run that lists them)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Find duplicates and copies among the indexed images: exact bytes, same pixels, near
    duplicates (resized, re-compressed, turned, mirrored) and edited copies (cropped, recoloured,
    framed, captioned), told apart from other shots of the same scene."""
    if move_to and trash:
        fail("give --move-to or --trash, not both")
    for r in reference:
        if not os.path.isdir(r):
            fail(f"{r}: the reference folder does not exist")
    idx = open_index(index, readonly=True)
    try:
        with progress_bar("verifying", enabled=not (as_json or quiet)) as update:
            report = idx.duplicates(preset, threshold, keep, reference, progress=update)
    finally:
        idx.close()
    if sheet:
        contact_sheet(report, sheet)
    if csv_out:
        write_csv(report, csv_out)
    out: dict[str, Any] = report.to_dict()
    out["timings"] = {k: round(v, 3) for k, v in out["timings"].items() if isinstance(v, float)}
    if move_to or trash:
        out["action"] = act(report, index, move_to, trash, yes, reference, as_json)
    if as_json:
        print_json(out)
    elif csv_out != "-":
        show(report)


def show(report: Any) -> None:
    for n, g in enumerate(report.groups, 1):
        table = Table(title=f"group {n}", title_justify="left", show_edge=False)
        for col in ("", "kind", "score", "size", "pixels", "path"):
            table.add_column(col)
        for m in g.members:
            table.add_row(m.action + (" (ref)" if m.reference else ""), m.kind or "centre",
                          "" if m.score is None else f"{m.score:.3f}", f"{m.size / 1e3:.0f} kB",
                          f"{m.width}x{m.height}", m.path)
        console.print(table)
    removable = sum(len(g.remove) for g in report.groups)
    console.print(f"{len(report.groups)} groups, {removable} files suggested for removal, among {report.images} "
                  f"images (preset {report.preset}, threshold {report.threshold:g}; {report.candidates} candidate "
                  f"pairs, {report.verified} verified) took {report.seconds:.2f} s", highlight=False)


def write_csv(report: Any, target: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["group", "id", "path", "action", "kind", "score", "width", "height", "bytes", "mtime", "reference"])
    for n, g in enumerate(report.groups, 1):
        for m in g.members:
            w.writerow([n, m.id, m.path, m.action, m.kind or "centre", "" if m.score is None else m.score,
                        m.width, m.height, m.size, m.mtime, int(m.reference)])
    if target == "-":
        sys.stdout.write(buf.getvalue())
    else:
        with open(target, "w", newline="", encoding="utf-8") as f:
            f.write(buf.getvalue())


def act(report: Any, index: str, move_to: Optional[str], trash: bool, yes: bool, reference: List[str],
        as_json: bool) -> dict[str, Any]:
    """Move or trash the files suggested for removal: with ``--yes`` only, and only files still
    as they were indexed; the index then forgets them."""
    from lookalike.engine.relocate import move_files, trash_files

    members = [m for g in report.groups for m in g.remove if not m.reference]
    where = "the trash" if trash else move_to
    if not yes:
        if not as_json:
            for m in members:
                console.print(f"would move {m.path} to {where}", highlight=False, soft_wrap=True)
            console.print(f"dry run: {len(members)} files would go to {where} "
                          f"({sum(m.size for m in members) / 1e6:.1f} MB); run again with --yes to do it", highlight=False)
        return {"dry_run": True, "files": [m.path for m in members], "to": where}
    ready, changed = [], []
    for m in members:
        try:
            st = os.stat(m.path)
        except OSError:
            changed.append(m.path)
            continue
        (ready if (st.st_size, st.st_mtime) == (m.size, m.mtime) else changed).append(m)
    paths = [m.path for m in ready]
    rep = trash_files(paths, reference) if trash else move_files(paths, move_to, reference)  # type: ignore[arg-type]
    moved = {src for src, _ in rep.moved}
    ids = [m.id for m in ready if os.path.abspath(m.path) in moved]
    forgotten = 0
    if ids:
        try:
            idx = open_index(index)
            try:
                forgotten = idx.remove_ids(ids)
            finally:
                idx.close()
        except Exception as e:  # noqa: BLE001 - the files are moved; the index catches up with `index --prune`
            err_console.print(f"the files were moved, but the index could not forget them now ({e}); "
                              "`lookalike index FOLDER --prune` will", highlight=False)
    if not as_json:
        console.print(f"moved {len(rep.moved)} files to {where}; {len(changed)} changed since indexing were left; "
                      f"{len(rep.skipped)} skipped", highlight=False)
    return {"dry_run": False, "moved": [list(x) for x in rep.moved], "skipped": [list(x) for x in rep.skipped],
            "changed": [getattr(m, "path", m) for m in changed], "removed_from_index": forgotten, "to": where}


def contact_sheet(report: Any, target: str, thumb: int = 160, max_groups: int = 60) -> None:
    """A PNG with one row per group: each member's thumbnail, keep/remove, kind and score."""
    from PIL import Image, ImageDraw

    from lookalike.errors import ImageError
    from lookalike.io import load_image

    groups = report.groups[:max_groups]
    cols = max([len(g.members) for g in groups] or [1])
    label = 34
    sheet = Image.new("RGB", (max(1, cols) * (thumb + 8) + 8, max(1, len(groups)) * (thumb + label + 12) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for r, g in enumerate(groups):
        y = 8 + r * (thumb + label + 12)
        for c, m in enumerate(g.members):
            x = 8 + c * (thumb + 8)
            try:
                im = Image.fromarray(load_image(m.path, max_side=thumb))
                sheet.paste(im, (x + (thumb - im.width) // 2, y + (thumb - im.height) // 2))
            except ImageError:
                draw.rectangle([x, y, x + thumb, y + thumb], outline="grey")
            colour = (0, 120, 0) if m.action == "keep" else (180, 0, 0)
            draw.rectangle([x - 2, y - 2, x + thumb + 1, y + thumb + 1], outline=colour, width=2)
            kind = m.kind or "centre"
            score = "" if m.score is None else f" {m.score:.3f}"
            draw.text((x, y + thumb + 3), f"{m.action} {kind}{score}", fill=colour)
            draw.text((x, y + thumb + 17), f"{m.width}x{m.height} {os.path.basename(m.path)[:22]}", fill="black")
    sheet.save(target, "PNG")
