"""``lookalike tag``: user tags, captions files, OCR and the learned text bridge of an index."""
from __future__ import annotations

import os
from typing import List, Optional

import typer

from lookalike.cli.app import app, console, fail, open_index, print_json, progress_bar


@app.command("tag")
def tag_cmd(
    images: List[str] = typer.Argument(None, help="Indexed image files (or ids) to tag or show."),
    index: str = typer.Option(..., "--index", "-i", help="Index directory."),
    add: List[str] = typer.Option([], "--add", "-a", help="Tag to add (repeatable)."),
    remove: List[str] = typer.Option([], "--remove", "-r", help="Tag to remove (repeatable)."),
    captions: Optional[str] = typer.Option(None, help="CSV/TSV file of path,caption rows: captions for "
                                           "indexed images now, and for images indexed later."),
    ocr: Optional[str] = typer.Option(None, help="OCR of indexed and future images: auto (only where "
                                      "text is likely), on, or off (the default)."),
    train_bridge: bool = typer.Option(False, "--train-bridge", help="Learn the image→text bridge from the "
                                      "index's captions and tags, and use it in text search."),
    as_json: bool = typer.Option(False, "--json", help="Print the texts of the images as JSON."),
) -> None:
    """Add or remove tags of images, import captions, run OCR, or train the text bridge; with only
    IMAGES, show every text the index holds for them (tags, captions, metadata, OCR, classes)."""
    from lookalike.pipelines.text import TextExtension, ocr_entries, train_bridge as train
    from lookalike.text.sources import WEIGHTS, TextEntry, captions_for, load_captions
    from lookalike.text.store import TextIndex

    if ocr is not None and ocr not in ("auto", "on", "off"):
        fail("--ocr must be auto, on or off")
    writes = bool(add or remove or captions or ocr or train_bridge)
    idx = open_index(index, readonly=not writes)
    try:
        ids = []
        for ref in images or []:
            row = idx.catalog.get(int(ref)) if ref.isdigit() and not os.path.exists(ref) \
                else idx.catalog.by_path(os.path.abspath(ref))
            if row is None or row.status != "ok":
                fail(f"{ref} is not an indexed image")
            ids.append(row.id)
        caps = load_captions(captions) if captions else None

        def change(db) -> None:
            TextIndex.ensure_schema(db)
            ti = TextIndex(db)
            for i in ids:
                for tag in add:
                    ti.add_tag(i, tag)
                for tag in remove:
                    ti.remove_tag(i, tag)
            every = idx.catalog.rows(idx.catalog.ok_ids()) if (captions or ocr) else {}
            if caps is not None:
                idx.catalog.set_setting("text_captions", os.path.abspath(captions), db)
                n = 0
                for i, row in every.items():
                    have = {e.text for e in ti.entries(i) if e.source == "caption"}
                    new = [c for c in captions_for(row.path, caps) if c not in have]
                    ti.add(i, [TextEntry("caption", c, WEIGHTS["caption"]) for c in new])
                    n += len(new)
                console.print(f"{n} captions added")
            if ocr:
                idx.catalog.set_setting("text_ocr", ocr, db)
                if ocr != "off":
                    found = 0
                    with progress_bar("OCR", enabled=not as_json) as update:
                        for done, (i, row) in enumerate(every.items(), 1):
                            entries = ocr_entries(row.path, ocr)
                            ti.add(i, entries, replace_sources=("ocr",))
                            found += bool(entries)
                            update(done, len(every))
                    console.print(f"text found in {found} of {len(every)} images")
            ti.embed_missing()
            if train_bridge:
                _, n = train(db, idx.catalog, idx.dir)
                console.print(f"bridge trained on {n} texts")

        if writes:
            idx.writer.run(change)
        ti = TextExtension.reader(idx.catalog.db)
        out = {str(i): [{"source": e.source, "text": e.text, "weight": round(e.weight, 4)}
                        for e in (ti.entries(i) if ti is not None else [])] for i in ids}
    finally:
        idx.close()
    if as_json:
        print_json(out)
    elif ids and not (add or remove):
        for i, entries in out.items():
            console.print(f"[bold]{i}[/]: " + "; ".join(f"{e['source']}: {e['text']}" for e in entries), highlight=False)
