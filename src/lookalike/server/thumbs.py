"""Thumbnails over HTTP: the ones the writer stored with the index, named by content, so a
browser may keep them for good (``ETag``, ``304 Not Modified``, ``Cache-Control: immutable`` for
URLs that carry the content's version). An image without a stored thumbnail (an index made before
thumbnails) gets one made in memory from its original, kept in a bounded cache: a request never
writes to the index folder."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from lookalike.engine.catalog import Catalog, ImageRow
from lookalike.engine.thumbs import THUMB_SIDE, THUMB_TYPE, ThumbStore, make_thumbnail
from lookalike.io import decode
from lookalike.server.media import ByteCache

FOREVER = "public, max-age=31536000, immutable"  # the URL names the content: it never changes
REVALIDATE = "no-cache"  # a URL without the version: the browser asks again (cheap: 304)


def version(row: ImageRow) -> str:
    """What changes when the image's content changes (its hash; size and mtime without one)."""
    return (row.hash or f"{row.size}-{row.mtime}")[:16]


def thumb_url(image_id: int, ver: str) -> str:
    return f"/thumbs/{image_id}?v={ver}"


class Thumbnails:
    def __init__(self, store: ThumbStore, catalog: Catalog, cache_bytes: int) -> None:
        self.store, self.catalog = store, catalog
        self.made = ByteCache(cache_bytes)  # thumbnails made from originals, in memory only

    def get(self, row: ImageRow, original: Callable[[], bytes]) -> bytes:
        """The thumbnail of an indexed image: stored, or made from ``original()`` (which raises
        when the file is no longer the indexed image) and cached in memory."""
        data = self.store.read(row.hash) if row.hash else None
        if data is not None:
            return data
        key = (row.id, version(row))
        data = self.made.get(key)
        if data is None:
            data = make_thumbnail(decode(original(), f"image {row.id}", max_side=2 * THUMB_SIDE))
            self.made.put(key, data)
        return data

    def headers(self, row: ImageRow, asked_version: str | None) -> dict[str, str]:
        ver = version(row)
        return {"ETag": f'"{ver}"', "Cache-Control": FOREVER if asked_version == ver else REVALIDATE}

    @staticmethod
    def not_modified(row: ImageRow, if_none_match: str | None) -> bool:
        tags = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
        return f'"{version(row)}"' in tags or "*" in tags

    def with_urls(self, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Copies of result or listing items (with ``id``) with their thumbnail's ``thumb`` URL."""
        items = list(items)
        rows = self.catalog.rows(it["id"] for it in items)
        return [{**it, "thumb": thumb_url(it["id"], version(rows[it["id"]]))} if it["id"] in rows else it
                for it in items]


__all__ = ["FOREVER", "REVALIDATE", "THUMB_TYPE", "Thumbnails", "thumb_url", "version"]
