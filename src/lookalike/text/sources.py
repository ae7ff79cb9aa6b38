"""Text found around an image: file and folder names, embedded metadata, sidecar captions."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from PIL import Image, IptcImagePlugin

# default weight of each source in the keyword and semantic scores
WEIGHTS: dict[str, float] = {"tag": 1.0, "caption": 1.0, "meta": 1.0, "ocr": 0.8, "filename": 0.5}

_EXIF_TEXT = {0x010E: "ImageDescription", 0x9C9B: "XPTitle", 0x9C9C: "XPComment",
              0x9C9E: "XPKeywords", 0x9C9F: "XPSubject", 0x013B: "Artist"}
_IPTC_TEXT = {(2, 5): "ObjectName", (2, 25): "Keywords", (2, 105): "Headline", (2, 120): "Caption"}
_XMP_FIELDS = ("description", "title", "subject")
_NOISE = {"img", "image", "dsc", "dscn", "dcim", "pic", "photo", "jpg", "jpeg", "png", "copy", "final",
          "edited", "new", "tmp", "scan", "screenshot", "pxl", "mvimg", "wp"}


@dataclass(frozen=True)
class TextEntry:
    """One piece of text describing an image; ``source`` is tag/caption/meta/ocr/filename/class."""

    source: str
    text: str
    weight: float = 1.0


def name_words(path: str | Path, folders: int = 2) -> str:
    """Words of the file name and its ``folders`` parent folders: "Trips/beach_day/IMG_0042-sunsetView.jpg"
    → "beach day sunset view". Numbers and camera prefixes are dropped."""
    p = Path(path)
    parts = [p.stem] + [q.name for q in list(p.parents)[:folders] if q.name not in ("", ".", "..")]
    words: list[str] = []
    for part in reversed(parts):
        part = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", part)
        for w in re.split(r"[\W_]+", part):
            w = w.strip()
            if w and not (w.isascii() and len(w) < 2) and not w.isdigit() and w.lower() not in _NOISE and not re.fullmatch(r"[a-zA-Z]{0,4}\d+", w):
                words.append(w.lower() if w.isascii() else w)
    return " ".join(words)


def _decode(value: object) -> str:
    if isinstance(value, bytes):
        if value[:8] in (b"ASCII\x00\x00\x00", b"UNICODE\x00"):
            enc = "utf-16" if value[:8] == b"UNICODE\x00" else "ascii"
            return value[8:].decode(enc, "ignore").strip("\x00 ").strip()
        for enc in ("utf-8", "latin-1"):
            try:
                return value.decode(enc).strip("\x00 ").strip()
            except UnicodeDecodeError:
                continue
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return bytes(value).decode("utf-16-le", "ignore").strip("\x00 ").strip()
    return str(value).strip("\x00 ").strip() if value is not None else ""


def _xmp_texts(xmp: bytes | str) -> list[str]:
    s = xmp.decode("utf-8", "ignore") if isinstance(xmp, bytes) else xmp
    out: list[str] = []
    for field in _XMP_FIELDS:
        for m in re.finditer(rf"<dc:{field}\b[^>]*>(.*?)</dc:{field}>", s, re.S):
            items = re.findall(r"<rdf:li\b[^>]*>(.*?)</rdf:li>", m.group(1), re.S) or [m.group(1)]
            out += [re.sub(r"<[^>]+>", " ", i).strip() for i in items]
        out += re.findall(rf'dc:{field}="([^"]*)"', s)
    return [t for t in out if t]


def metadata_texts(path: str | Path) -> list[str]:
    """Descriptions, titles, keywords and comments from EXIF, XMP and IPTC (what PIL can read)."""
    texts: list[str] = []
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            for tag in _EXIF_TEXT:
                if tag in exif:
                    v = exif[tag]
                    if 0x9C9B <= tag <= 0x9C9F and isinstance(v, bytes):  # Windows XP* tags: UTF-16LE
                        v = v.decode("utf-16-le", "ignore")
                    texts.append(_decode(v))
            user_comment = exif.get_ifd(0x8769).get(0x9286)
            if user_comment:
                texts.append(_decode(user_comment))
            xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
            if xmp:
                texts += _xmp_texts(xmp)
            iptc = IptcImagePlugin.getiptcinfo(im) or {}
            for key in _IPTC_TEXT:
                vals = iptc.get(key)
                for v in vals if isinstance(vals, list) else [vals] if vals else []:
                    texts.append(_decode(v))
            if isinstance(im.info.get("comment"), (bytes, str)):
                texts.append(_decode(im.info["comment"]))
    except (OSError, SyntaxError, ValueError):
        return []
    seen: set[str] = set()
    return [t for t in texts if t and not (t in seen or seen.add(t))]


def sidecar_texts(path: str | Path) -> list[str]:
    """Captions in ``photo.jpg.txt`` or ``photo.txt`` beside the image."""
    p = Path(path)
    out = []
    for side in (p.with_name(p.name + ".txt"), p.with_suffix(".txt")):
        if side != p and side.is_file():
            text = side.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                out.append(text)
    return out


def load_captions(path: str | Path) -> dict[str, list[str]]:
    """A captions file: CSV or TSV rows ``image_path,caption`` (a header row is skipped when its
    second cell is "caption"). Keys are the paths as written; several rows per image are kept."""
    p = Path(path)
    text = p.read_text(encoding="utf-8-sig", errors="replace")
    delim = "\t" if p.suffix.lower() == ".tsv" or ("\t" in text.split("\n", 1)[0]) else ","
    out: dict[str, list[str]] = {}
    for row in csv.reader(text.splitlines(), delimiter=delim):
        if len(row) < 2 or not row[0].strip():
            continue
        if row[1].strip().lower() in ("caption", "captions", "text") and not out:
            continue
        out.setdefault(row[0].strip(), []).append(delim.join(row[1:]).strip())
    return out


def captions_for(path: str | Path, captions: Mapping[str, list[str]] | None) -> list[str]:
    """Captions of ``path`` from a loaded captions file, matched by full path, then by the
    trailing path parts, then by file name."""
    if not captions:
        return []
    p = Path(path)
    parts = p.parts
    for i in range(len(parts)):
        key = str(Path(*parts[i:]))
        if key in captions:
            return list(captions[key])
    return list(captions.get(p.name, []))


def gather_texts(path: str | Path, captions: Mapping[str, list[str]] | None = None,
                 weights: Mapping[str, float] = WEIGHTS) -> list[TextEntry]:
    """All cheap text sources of one image file (no pixels needed): name, metadata, captions."""
    out: list[TextEntry] = []
    words = name_words(path)
    if words:
        out.append(TextEntry("filename", words, weights["filename"]))
    out += [TextEntry("meta", t, weights["meta"]) for t in metadata_texts(path)]
    caps = sidecar_texts(path) + captions_for(path, captions)
    out += [TextEntry("caption", t, weights["caption"]) for t in dict.fromkeys(caps)]
    return out


def unique(entries: Iterable[TextEntry]) -> list[TextEntry]:
    """Entries with duplicate (source, text) removed, first kept."""
    seen: set[tuple[str, str]] = set()
    return [e for e in entries if not ((e.source, e.text) in seen or seen.add((e.source, e.text)))]
