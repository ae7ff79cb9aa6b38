"""``TextIndex``: per-image text, class probabilities and text-space vectors in SQLite, searched by
keyword (FTS5 bm25), by meaning (sentence embeddings), zero-shot (ImageNet classes), and by learned
or CLIP image vectors, fused into one ranking (``fusion``) and shown on a 0–1 scale (``scale``).

Queries in any of USE's languages reach every method (``encoder.query_spaces``): English queries
are embedded with MiniLM and USE, others with USE (multilingual) only.

Tables (prefixed ``text_``; they live in the index's ``catalog.sqlite``):
  text_entries(id, image_id, source, text, weight, emb)   one row per piece of text (emb: MiniLM)
  text_entry_emb(entry_id, space, emb)                    entry embeddings in other spaces ("use")
  text_fts_tri / text_fts_words                           FTS5 over text: trigram (any script)
                                                          and porter+unicode61 words
  text_fts_zh                                             FTS5 over the jieba words of CJK text
  text_classes(image_id, class_id, prob)                  top-k ImageNet probabilities (sparse)
  text_vectors(kind, image_id, vec)                       image vectors in a text space ("bridge"
                                                          (MiniLM), "bridge_use", "clip"); "classes":
                                                          text_classes packed, one row per image
"""
from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from lookalike.text.classes import class_names, prompt_embeddings, softmax
from lookalike.text.encoder import MINILM, SPACES, USE, encoder_for, query_spaces
from lookalike.text.fusion import HUB_PENALTY, fuse, part_weights
from lookalike.text.scale import readable
from lookalike.text.sources import TextEntry
from lookalike.text.words import CJK_RUN, has_cjk, query_words, segment

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS text_entries (id INTEGER PRIMARY KEY, image_id INTEGER NOT NULL,
       source TEXT NOT NULL, text TEXT NOT NULL, weight REAL NOT NULL DEFAULT 1.0, emb BLOB)""",
    "CREATE INDEX IF NOT EXISTS text_entries_image ON text_entries(image_id)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS text_fts_tri USING fts5(text, content='text_entries',
       content_rowid='id', tokenize='trigram')""",
    """CREATE VIRTUAL TABLE IF NOT EXISTS text_fts_words USING fts5(text, content='text_entries',
       content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER IF NOT EXISTS text_entries_ai AFTER INSERT ON text_entries BEGIN
       INSERT INTO text_fts_tri(rowid, text) VALUES (new.id, new.text);
       INSERT INTO text_fts_words(rowid, text) VALUES (new.id, new.text); END""",
    """CREATE TRIGGER IF NOT EXISTS text_entries_ad AFTER DELETE ON text_entries BEGIN
       INSERT INTO text_fts_tri(text_fts_tri, rowid, text) VALUES ('delete', old.id, old.text);
       INSERT INTO text_fts_words(text_fts_words, rowid, text) VALUES ('delete', old.id, old.text); END""",
    """CREATE TABLE IF NOT EXISTS text_classes (image_id INTEGER NOT NULL, class_id INTEGER NOT NULL,
       prob REAL NOT NULL, PRIMARY KEY (image_id, class_id))""",
    """CREATE TABLE IF NOT EXISTS text_vectors (kind TEXT NOT NULL, image_id INTEGER NOT NULL,
       vec BLOB NOT NULL, PRIMARY KEY (kind, image_id))""",
]
# added later: created (and filled from the stored entries) on first open of an older database
SCHEMA_V2 = [
    """CREATE TABLE IF NOT EXISTS text_entry_emb (entry_id INTEGER NOT NULL, space TEXT NOT NULL,
       emb BLOB NOT NULL, PRIMARY KEY (entry_id, space))""",
    """CREATE VIRTUAL TABLE IF NOT EXISTS text_fts_zh USING fts5(words, tokenize='unicode61')""",
    "CREATE VIRTUAL TABLE IF NOT EXISTS text_fts_zh_vocab USING fts5vocab(text_fts_zh, 'row')",
    """CREATE TRIGGER IF NOT EXISTS text_entries_ad2 AFTER DELETE ON text_entries BEGIN
       DELETE FROM text_fts_zh WHERE rowid = old.id;
       DELETE FROM text_entry_emb WHERE entry_id = old.id; END""",
]

STOPWORDS = frozenset("a an the of in on at to and or is are with for by from its it this that as be".split())
# zero-shot softmax temperature per text space (chosen on the first 800 images' captions)
ZERO_SHOT_T = {MINILM: 0.08, USE: 0.08}
# sources whose text is embedded for the semantic score ("class" entries are scored zero-shot)
SEMANTIC_SOURCES = ("tag", "caption", "meta", "ocr", "filename")
TOP_CLASSES = 20  # class probabilities kept per image
AUTO_TAGS = 5  # of which the best are also stored as "class" text entries (keyword search, display)


CLASSES_KIND = "classes"  # text_vectors rows that pack an image's stored classes (read in one go)


def pack_classes(class_ids: np.ndarray, probs: np.ndarray) -> bytes:
    """An image's classes as one blob: k little-endian uint16 class ids, then k float32 probabilities."""
    return np.asarray(class_ids, "<u2").tobytes() + np.asarray(probs, "<f4").tobytes()


def unpack_classes(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    n = len(blob) // 6
    return (np.frombuffer(blob[:2 * n], "<u2").astype(np.int64),
            np.frombuffer(blob[2 * n:], "<f4").astype(np.float64))


_SHARED: dict[int, tuple[sqlite3.Connection, "TextIndex"]] = {}
_shared_lock = threading.Lock()
_blas_lock = threading.Lock()
_blas: dict[str, Any] = {"controller": None, "users": 0, "limiter": None}


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread while text scores are computed. A query's products are small
    (a vector times a 10,000-row matrix): a second BLAS thread only adds hand-offs, and on a busy
    machine threads that wait for a core cost 3× the CPU time (measured: 59 → 20 ms a query on a
    10,000-image index). Concurrent queries share one limit (restored when the last one ends)."""
    with _blas_lock:
        if _blas["users"] == 0:
            if _blas["controller"] is None:
                try:
                    from threadpoolctl import ThreadpoolController

                    _blas["controller"] = ThreadpoolController()
                except Exception:  # noqa: BLE001 - without it, numpy's default threads
                    _blas["controller"] = False
            if _blas["controller"]:
                _blas["limiter"] = _blas["controller"].limit(limits=1, user_api="blas")
        _blas["users"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas["users"] -= 1
            if _blas["users"] == 0 and _blas["limiter"] is not None:
                _blas["limiter"].restore_original_limits()
                _blas["limiter"] = None


class TextIndex:
    """Text search over one SQLite database (a path, or a connection shared with the catalog)."""

    def __init__(self, db: str | Path | sqlite3.Connection, encoder: Any = None,
                 zero_shot_temperature: Mapping[str, float] | None = None,
                 encoders: Mapping[str, Any] | None = None, readonly: bool = False) -> None:
        """``readonly``: for searching; no table is created or changed (the writer does that)."""
        self.db = db if isinstance(db, sqlite3.Connection) else sqlite3.connect(str(db), isolation_level=None)
        self._encoders: dict[str, Any] = dict(encoders or {})
        if encoder is not None:
            self._encoders[getattr(encoder, "space", MINILM)] = encoder
        self.tq = {**ZERO_SHOT_T, **(zero_shot_temperature or {})}
        self._cache: dict[Any, Any] = {}
        self._state: tuple[int, int] | None = None
        self.v2 = (self.db.execute("SELECT 1 FROM sqlite_master WHERE name='text_fts_zh_vocab'").fetchone()
                   is not None) if readonly else self.ensure_schema(self.db)

    @classmethod
    def shared(cls, db: sqlite3.Connection) -> "TextIndex":
        """One TextIndex per connection, kept across calls so that its matrices (classes, vectors,
        entry embeddings) are built once; they are rebuilt after any change to the database, by
        this connection (``total_changes``) or another (``PRAGMA data_version``)."""
        key = (db.total_changes, db.execute("PRAGMA data_version").fetchone()[0])
        with _shared_lock:
            hit = _SHARED.get(id(db))
            if hit is not None and hit[0] is db:
                ti = hit[1]
                if ti._state != key:
                    ti._changed()
            else:
                ti = cls(db)
                if len(_SHARED) > 64:
                    _SHARED.clear()
                _SHARED[id(db)] = (db, ti)
            ti._state = (db.total_changes, db.execute("PRAGMA data_version").fetchone()[0])
        return ti

    @staticmethod
    def ensure_schema(db: sqlite3.Connection) -> bool:
        """Create missing tables; False if the newer tables are missing and cannot be made (read-only)."""
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='text_vectors'").fetchone() is None:
            for stmt in SCHEMA:  # execute (not executescript): safe inside an open transaction
                db.execute(stmt)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='text_fts_zh_vocab'").fetchone() is None:
            try:
                for stmt in SCHEMA_V2:
                    db.execute(stmt)
                rows = db.execute("SELECT id, text FROM text_entries").fetchall()
                db.executemany("INSERT INTO text_fts_zh(rowid, words) VALUES (?, ?)",
                               [(i, segment(t)) for i, t in rows if has_cjk(t)])
            except sqlite3.OperationalError:
                return False
        return True

    def encoder_for(self, space: str) -> Any:
        if space not in self._encoders:
            self._encoders[space] = encoder_for(space)
        return self._encoders[space]

    @property
    def encoder(self) -> Any:
        """The MiniLM encoder (English space)."""
        return self.encoder_for(MINILM)

    def _changed(self) -> None:
        self._cache.clear()

    # -- writing -----------------------------------------------------------------------------
    def add(self, image_id: int, entries: Iterable[TextEntry], replace_sources: Sequence[str] = ()) -> None:
        """Add text entries of an image; first drop its entries of ``replace_sources``."""
        for src in replace_sources:
            self.db.execute("DELETE FROM text_entries WHERE image_id=? AND source=?", (int(image_id), src))
        rows = [(int(image_id), e.source, e.text.strip(), float(e.weight)) for e in entries if e.text.strip()]
        for r in rows:
            eid = self.db.execute("INSERT INTO text_entries(image_id, source, text, weight) VALUES (?, ?, ?, ?)",
                                  r).lastrowid
            if self.v2 and has_cjk(r[2]):
                self.db.execute("INSERT INTO text_fts_zh(rowid, words) VALUES (?, ?)", (eid, segment(r[2])))
        self._changed()

    def add_tag(self, image_id: int, tag: str) -> bool:
        """A user tag; False if the image already has it."""
        if self.db.execute("SELECT 1 FROM text_entries WHERE image_id=? AND source='tag' AND text=?",
                           (int(image_id), tag.strip())).fetchone():
            return False
        self.add(image_id, [TextEntry("tag", tag, 1.0)])
        return True

    def remove_tag(self, image_id: int, tag: str) -> bool:
        n = self.db.execute("DELETE FROM text_entries WHERE image_id=? AND source='tag' AND text=?",
                            (int(image_id), tag.strip())).rowcount
        self._changed()
        return n > 0

    def set_classes(self, image_ids: Sequence[int], logits: np.ndarray, top: int = TOP_CLASSES,
                    auto_tags: int = AUTO_TAGS) -> None:
        """Store each image's top ImageNet class probabilities and its ``auto_tags`` best classes
        as "class" text entries (weight = probability)."""
        p = softmax(np.atleast_2d(np.asarray(logits, np.float32)))
        names = class_names()
        for iid, row in zip(image_ids, p):
            iid = int(iid)
            order = np.argsort(-row)[:top]
            self.db.execute("DELETE FROM text_classes WHERE image_id=?", (iid,))
            self.db.executemany("INSERT INTO text_classes(image_id, class_id, prob) VALUES (?, ?, ?)",
                                [(iid, int(c), float(row[c])) for c in order])
            self.db.execute("INSERT OR REPLACE INTO text_vectors(kind, image_id, vec) VALUES (?, ?, ?)",
                            (CLASSES_KIND, iid, pack_classes(order, row[order])))
            self.add(iid, [TextEntry("class", names[c], float(row[c])) for c in order[:auto_tags]],
                     replace_sources=("class",))
        self._changed()

    def set_vectors(self, kind: str, image_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Image vectors in a text space (``kind`` "bridge" or "clip"), L2-normalised here."""
        v = np.asarray(vectors, np.float32)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        self.db.executemany("INSERT OR REPLACE INTO text_vectors(kind, image_id, vec) VALUES (?, ?, ?)",
                            [(kind, int(i), x.tobytes()) for i, x in zip(image_ids, v)])
        self._changed()

    def set_values(self, kind: str, image_ids: Sequence[int], values: np.ndarray) -> None:
        """One number per image (e.g. ``hub:bridge_use``, an image's hubness in that bridge)."""
        v = np.asarray(values, np.float32).reshape(-1, 1)
        self.db.executemany("INSERT OR REPLACE INTO text_vectors(kind, image_id, vec) VALUES (?, ?, ?)",
                            [(kind, int(i), x.tobytes()) for i, x in zip(image_ids, v)])
        self._changed()

    def values(self, kind: str, ids: np.ndarray | None = None) -> np.ndarray | None:
        """(N,) the numbers stored as ``kind`` (0 where an image has none), or None if none is stored."""
        if not self.has_vectors(kind):
            return None
        s, _ = self.vector_scores(kind, np.ones((1, 1), np.float32), ids)
        return s[0]

    def remove(self, image_ids: Iterable[int]) -> None:
        ids = [(int(i),) for i in image_ids]
        self.db.executemany("DELETE FROM text_entries WHERE image_id=?", ids)
        self.db.executemany("DELETE FROM text_classes WHERE image_id=?", ids)
        self.db.executemany("DELETE FROM text_vectors WHERE image_id=?", ids)
        self._changed()

    # -- reading -----------------------------------------------------------------------------
    def entries(self, image_id: int) -> list[TextEntry]:
        return [TextEntry(s, t, w) for s, t, w in self.db.execute(
            "SELECT source, text, weight FROM text_entries WHERE image_id=? ORDER BY id", (int(image_id),))]

    def tags(self, image_id: int) -> list[str]:
        return [e.text for e in self.entries(image_id) if e.source == "tag"]

    def image_ids(self) -> np.ndarray:
        """Every image with any text, class or vector, sorted."""
        if "ids" not in self._cache:
            rows = self.db.execute("SELECT image_id FROM text_entries UNION SELECT image_id FROM text_classes "
                                   "UNION SELECT image_id FROM text_vectors").fetchall()
            self._cache["ids"] = np.array(sorted(r[0] for r in rows), np.int64)
        return self._cache["ids"]

    def has_vectors(self, kind: str) -> bool:
        return self.db.execute("SELECT 1 FROM text_vectors WHERE kind=? LIMIT 1", (kind,)).fetchone() is not None

    # -- scores ------------------------------------------------------------------------------
    def _known_zh(self, words: Iterable[str]) -> set[str]:
        ws = list(words)
        if not ws or not self.v2:
            return set()
        q = ",".join("?" * len(ws))
        return {r[0] for r in self.db.execute(f"SELECT term FROM text_fts_zh_vocab WHERE term IN ({q})", ws)}

    def keyword_scores(self, query: str, ids: np.ndarray | None = None) -> np.ndarray:
        """Σ over an image's matching entries of weight · bm25 relevance (0 = no match), aligned
        with ``ids``. Words outside CJK use the porter/unicode61 table; CJK text is matched by its
        words (``words.query_words``: the query's substrings that are jieba words of the index),
        and a CJK run of 3+ characters also as a phrase (trigram table)."""
        ids = self.image_ids() if ids is None else ids
        out = np.zeros(len(ids), np.float64)
        words = [w for w in re.findall(r"[^\W_]+", CJK_RUN.sub(" ", query.lower())) if w not in STOPWORDS]
        hits: list[tuple[int, float]] = []
        if words:
            expr = " OR ".join('"' + w.replace('"', '""') + '"' for w in dict.fromkeys(words))
            hits += self.db.execute(
                "SELECT e.image_id, -bm25(text_fts_words) * e.weight FROM text_fts_words "
                "JOIN text_entries e ON e.id = text_fts_words.rowid WHERE text_fts_words MATCH ?", (expr,)).fetchall()
        zh = query_words(query, self._known_zh) if has_cjk(query) else []
        if zh:
            hits += self.db.execute(
                "SELECT e.image_id, -bm25(text_fts_zh) * e.weight FROM text_fts_zh "
                "JOIN text_entries e ON e.id = text_fts_zh.rowid WHERE text_fts_zh MATCH ?",
                (" OR ".join('"' + w + '"' for w in zh),)).fetchall()
        for run in CJK_RUN.findall(query):
            if len(run) >= 3:
                hits += self.db.execute(
                    "SELECT e.image_id, -bm25(text_fts_tri) * e.weight FROM text_fts_tri "
                    "JOIN text_entries e ON e.id = text_fts_tri.rowid WHERE text_fts_tri MATCH ?",
                    ('"' + run + '"',)).fetchall()
            elif not self.v2:  # older read-only database without word table: substring scan
                hits += self.db.execute(
                    "SELECT image_id, weight * (length(text) - length(replace(text, ?, ''))) / length(?) "
                    "FROM text_entries WHERE instr(text, ?) > 0", (run, run, run)).fetchall()
        if hits and len(ids):
            iid, sc = (np.array(col) for col in zip(*hits))
            j = np.minimum(np.searchsorted(ids, iid), len(ids) - 1)
            ok = ids[j] == iid
            np.add.at(out, j[ok], np.maximum(sc[ok].astype(np.float64), 1e-6))
        return out

    def _entry_matrix(self, space: str = USE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image ids, weights, unit embeddings in ``space``) of the semantic entries (MiniLM: column
        ``emb``; others: ``text_entry_emb``). Embeddings an older index lacks are computed in memory:
        a search never writes (``embed_missing`` is the writer's)."""
        key = ("entries", space)
        if key not in self._cache:
            q = ",".join("?" * len(SEMANTIC_SOURCES))
            if space == MINILM:
                sql = f"SELECT id, image_id, weight, text, emb FROM text_entries WHERE source IN ({q}) ORDER BY image_id"
                args: tuple = SEMANTIC_SOURCES
            else:
                if not self.v2:
                    self._cache[key] = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 1), np.float32))
                    return self._cache[key]
                sql = (f"SELECT e.id, e.image_id, e.weight, e.text, v.emb FROM text_entries e LEFT JOIN "
                       f"text_entry_emb v ON v.entry_id = e.id AND v.space = ? WHERE e.source IN ({q}) "
                       "ORDER BY e.image_id")
                args = (space, *SEMANTIC_SOURCES)
            rows = self.db.execute(sql, args).fetchall()
            missing = [(r[0], r[3]) for r in rows if r[4] is None]  # an older index: in memory only
            extra: dict[int, np.ndarray] = {}
            if missing:
                emb = self.encoder_for(space).encode([t for _, t in missing]).astype(np.float16)
                extra = {i: e for (i, _), e in zip(missing, emb)}
            dim = (len(rows[0][4]) // 2 if rows[0][4] is not None else len(extra[rows[0][0]])) if rows else 1
            if rows and not extra and all(len(r[4]) == 2 * dim for r in rows):
                E = np.frombuffer(b"".join(r[4] for r in rows), np.float16).reshape(len(rows), dim).astype(np.float32)
            else:
                E = np.zeros((len(rows), dim), np.float32)
                for j, (eid, _, _, _, blob) in enumerate(rows):
                    E[j] = np.frombuffer(blob, np.float16) if blob is not None else extra[eid]
            self._cache[key] = (np.array([r[1] for r in rows], np.int64), np.array([r[2] for r in rows], np.float32), E)
        return self._cache[key]

    def embed_missing(self, image_ids: Sequence[int] | None = None, spaces: Sequence[str] = SPACES) -> int:
        """Compute and store the missing embeddings of the semantic entries (of ``image_ids``, or
        all) in every space: the writer calls this, so that searches only read. Returns how many."""
        q = ",".join("?" * len(SEMANTIC_SOURCES))
        only = "" if image_ids is None else f" AND e.image_id IN ({','.join('?' * len(image_ids))})"
        extra_args = [] if image_ids is None else [int(i) for i in image_ids]
        n = 0
        for space in spaces:
            if space == MINILM:
                sql = f"SELECT e.id, e.text FROM text_entries e WHERE e.emb IS NULL AND e.source IN ({q}){only}"
                args: list[Any] = [*SEMANTIC_SOURCES, *extra_args]
            elif self.v2:
                sql = (f"SELECT e.id, e.text FROM text_entries e LEFT JOIN text_entry_emb v ON v.entry_id = e.id "
                       f"AND v.space = ? WHERE v.emb IS NULL AND e.source IN ({q}){only}")
                args = [space, *SEMANTIC_SOURCES, *extra_args]
            else:
                continue
            missing = self.db.execute(sql, args).fetchall()
            if not missing:
                continue
            emb = self.encoder_for(space).encode([t for _, t in missing]).astype(np.float16)
            if space == MINILM:
                self.db.executemany("UPDATE text_entries SET emb=? WHERE id=?",
                                    [(e.tobytes(), i) for (i, _), e in zip(missing, emb)])
            else:
                self.db.executemany("INSERT OR REPLACE INTO text_entry_emb(entry_id, space, emb) VALUES (?, ?, ?)",
                                    [(i, space, e.tobytes()) for (i, _), e in zip(missing, emb)])
            n += len(missing)
        if n:
            self._changed()
        return n

    def copy_classes(self, source_id: int, image_id: int) -> None:
        """Give ``image_id`` the class probabilities and class tags of ``source_id`` (same content)."""
        src, dst = int(source_id), int(image_id)
        self.db.execute("DELETE FROM text_classes WHERE image_id=?", (dst,))
        self.db.execute("INSERT INTO text_classes(image_id, class_id, prob) "
                        "SELECT ?, class_id, prob FROM text_classes WHERE image_id=?", (dst, src))
        self.db.execute("DELETE FROM text_vectors WHERE image_id=? AND kind=?", (dst, CLASSES_KIND))
        self.db.execute("INSERT INTO text_vectors(kind, image_id, vec) SELECT kind, ?, vec FROM text_vectors "
                        "WHERE image_id=? AND kind=?", (dst, src, CLASSES_KIND))
        self.db.execute("DELETE FROM text_entries WHERE image_id=? AND source='class'", (dst,))
        self.db.execute("INSERT INTO text_entries(image_id, source, text, weight) "
                        "SELECT ?, source, text, weight FROM text_entries WHERE image_id=? AND source='class'",
                        (dst, src))
        self._changed()

    def semantic_scores(self, qvecs: np.ndarray, ids: np.ndarray | None = None,
                        space: str = USE) -> tuple[np.ndarray, np.ndarray]:
        """(Q, N) best weighted cosine between the query and an image's texts; and which images have any."""
        ids = self.image_ids() if ids is None else ids
        key = ("entries_by_image", space, ids.tobytes())
        if key not in self._cache:  # the entries of the images in ``ids``, grouped by image
            img, w, E = self._entry_matrix(space)
            pos = np.searchsorted(ids, img)
            ok = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == img) if len(img) else np.zeros(0, bool)
            if not ok.all():
                E, w, pos = E[ok], w[ok], pos[ok]
            if len(pos) > 1 and (np.diff(pos) < 0).any():  # rows come ordered by image: normally no copy
                order = np.argsort(pos, kind="stable")
                E, w, pos = E[order], w[order], pos[order]
            starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]]) if len(pos) else np.zeros(0, np.int64)
            WE = np.ascontiguousarray(E * w[:, None], np.float32)  # weight · cosine = query · (weight · entry)
            self._cache[key] = (WE, starts, pos[starts])
        WE, starts, where = self._cache[key]
        out = np.zeros((len(qvecs), len(ids)), np.float32)
        covered = np.zeros(len(ids), bool)
        if len(WE):
            sims = np.asarray(qvecs, np.float32) @ WE.T
            out[:, where] = np.maximum.reduceat(sims, starts, axis=1)  # per image: its best entry
            covered[where] = True
        return out, covered

    def sparse_classes(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each image's stored classes: (class ids (N, k), their √p L2-normalised per row (N, k),
        and which images have any); rows padded with weight 0. Built from the stored rows without
        a dense (N, 1000) matrix."""
        ids = self.image_ids() if ids is None else ids
        key = ("classes", ids.tobytes())
        if self._cache.get("classes_key") != key:
            k = TOP_CLASSES
            top = np.zeros((len(ids), k), np.int64)
            vals = np.zeros((len(ids), k), np.float32)
            iid, c, p = self._class_rows()
            if len(iid) and len(ids):
                j = np.minimum(np.searchsorted(ids, iid), len(ids) - 1)
                ok = (ids[j] == iid) & (p > 0)
                j, c, p = j[ok], c[ok], p[ok]
                order = np.lexsort((-p, j))  # by image, most probable first
                j, c, p = j[order], c[order], p[order]
                first = np.r_[0, np.flatnonzero(j[1:] != j[:-1]) + 1] if len(j) else np.zeros(0, np.int64)
                rank = np.arange(len(j)) - np.repeat(first, np.diff(np.r_[first, len(j)]))
                keep = rank < k
                top[j[keep], rank[keep]] = c[keep]
                vals[j[keep], rank[keep]] = np.sqrt(p[keep])
            vals /= np.maximum(np.linalg.norm(vals, axis=1, keepdims=True), 1e-12)
            self._cache["classes_key"], self._cache["classes"] = key, (top, vals, vals.any(axis=1))
        return self._cache["classes"]

    def _class_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image ids, class ids, probabilities) of every stored class: from the packed rows (one
        per image) when every image with classes has one, else from ``text_classes``."""
        packed = self.db.execute("SELECT count(*) FROM text_vectors WHERE kind=?", (CLASSES_KIND,)).fetchone()[0]
        if packed and packed == self.db.execute("SELECT count(DISTINCT image_id) FROM text_classes").fetchone()[0]:
            rows = self.db.execute("SELECT image_id, vec FROM text_vectors WHERE kind=?", (CLASSES_KIND,)).fetchall()
            k = {len(r[1]) for r in rows}
            if len(k) == 1:  # all rows alike: one buffer
                n = k.pop() // 6
                buf = np.frombuffer(b"".join(r[1] for r in rows), np.uint8).reshape(len(rows), 6 * n)
                c = buf[:, :2 * n].copy().view("<u2").astype(np.int64)
                p = buf[:, 2 * n:].copy().view("<f4").astype(np.float64)
                iid = np.repeat(np.array([r[0] for r in rows], np.int64), n)
                return iid, c.ravel(), p.ravel()
            parts = [(i, *unpack_classes(b)) for i, b in rows]
            return (np.concatenate([np.full(len(cc), i, np.int64) for i, cc, _ in parts]),
                    np.concatenate([cc for _, cc, _ in parts]), np.concatenate([pp for _, _, pp in parts]))
        rows = self.db.execute("SELECT image_id, class_id, prob FROM text_classes").fetchall()
        R = np.array(rows, np.float64).reshape(-1, 3)
        return R[:, 0].astype(np.int64), R[:, 1].astype(np.int64), R[:, 2]

    def class_matrix(self, ids: np.ndarray | None = None) -> np.ndarray:
        """(N, 1000) sparse class probabilities, flattened (√p) and L2-normalised per row."""
        top, vals, _ = self.sparse_classes(ids)
        P = np.zeros((len(top), 1000), np.float32)
        np.put_along_axis(P, top, vals, axis=1)
        return P

    def class_similarity(self, qvecs: np.ndarray, space: str = MINILM) -> np.ndarray:
        """(Q, 1000) cosine between the queries and the class embeddings of ``space``."""
        if ("prompts", space) not in self._cache:
            self._cache[("prompts", space)] = prompt_embeddings(self.encoder_for(space))
        return np.asarray(qvecs, np.float32) @ self._cache[("prompts", space)].T

    def zero_shot_scores(self, qvecs: np.ndarray, ids: np.ndarray | None = None,
                         space: str = MINILM) -> tuple[np.ndarray, np.ndarray]:
        """(Q, N): cosine between the query's class distribution, softmax(sim(query, class) / T),
        and each image's (sparse, top-k, √-flattened) classifier distribution (a gather over each
        image's stored classes, not a dense product)."""
        top, vals, covered = self.sparse_classes(ids)
        W = softmax(self.class_similarity(qvecs, space) / self.tq[space])
        return np.einsum("qnk,nk->qn", W[:, top], vals), covered

    def vector_scores(self, kind: str, qvecs: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Q, N) cosine between query vectors and the images' ``kind`` vectors."""
        ids = self.image_ids() if ids is None else ids
        ck = ("vec", kind, ids.tobytes())
        if self._cache.get(("veckey", kind)) != ck:
            rows = self.db.execute("SELECT image_id, vec FROM text_vectors WHERE kind=?", (kind,)).fetchall()
            dim = len(rows[0][1]) // 4 if rows else 1
            V = np.zeros((len(ids), dim), np.float32)
            cov = np.zeros(len(ids), bool)
            if rows and len(ids) and all(len(r[1]) == 4 * dim for r in rows):
                iid = np.array([r[0] for r in rows], np.int64)
                M = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim)
                j = np.minimum(np.searchsorted(ids, iid), len(ids) - 1)
                ok = ids[j] == iid
                V[j[ok]], cov[j[ok]] = M[ok], True
            self._cache[("veckey", kind)], self._cache[("vec", kind)] = ck, (V, cov)
        V, cov = self._cache[("vec", kind)]
        return np.asarray(qvecs, np.float32) @ V.T, cov

    # -- search ------------------------------------------------------------------------------
    def query_vectors(self, queries: Sequence[str], spaces: Sequence[str]) -> dict[str, np.ndarray]:
        return {sp: self.encoder_for(sp).encode(list(queries)) for sp in spaces}

    def score(self, queries: Sequence[str], methods: Sequence[str] = ("keyword", "semantic", "zeroshot", "bridge"),
              query_vectors: Mapping[str, np.ndarray] | None = None, weights: Mapping[str, float] | None = None,
              ids: np.ndarray | None = None, readable_scores: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores (Q, N)) for several queries: the fused ranking score, or with
        ``readable_scores`` the same order on the 0–1 scale of ``scale.readable``.

        Each query is embedded in its spaces (``encoder.query_spaces``), unless ``query_vectors``
        supplies vectors: then every query uses the spaces given (``"minilm"``, ``"use"``; other
        keys, e.g. ``"clip"``, are vectors for that vector kind). Zero-shot uses the first space
        (MiniLM for English); semantic and bridge use all of them. Methods without data are left out."""
        with one_blas_thread():
            return self._score(queries, methods, query_vectors, weights, ids, readable_scores)

    def _score(self, queries, methods, query_vectors, weights, ids, readable_scores) -> tuple[np.ndarray, np.ndarray]:
        ids = self.image_ids() if ids is None else np.asarray(ids, np.int64)
        out = np.zeros((len(queries), len(ids)))
        if not len(queries):
            return ids, out
        qv = dict(query_vectors or {})
        given = tuple(sp for sp in SPACES if sp in qv)
        groups: dict[tuple[str, ...], list[int]] = {}
        for n, q in enumerate(queries):
            groups.setdefault(given or query_spaces(q), []).append(n)
        for spaces, rows in groups.items():
            sub = [queries[r] for r in rows]
            if given:
                vecs = {sp: np.asarray(qv[sp])[rows] for sp in given}
            elif any(m in ("semantic", "zeroshot", "bridge") for m in methods):
                vecs = self.query_vectors(sub, spaces)
            else:
                vecs = {}
            extra = {k: np.asarray(v)[rows] for k, v in qv.items() if k not in SPACES}
            out[rows] = self._score_group(sub, spaces, methods, vecs, extra, weights, ids, readable_scores)
        return ids, out

    def _score_group(self, queries, spaces, methods, vecs, extra, weights, ids, readable_scores) -> np.ndarray:
        parts: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        evidence: dict[str, np.ndarray] = {}  # per part: the query's absolute evidence, 0..1
        if not len(ids):
            return np.zeros((len(queries), 0))
        for m in methods:
            if m == "keyword":
                parts[m] = (np.stack([self.keyword_scores(q, ids) for q in queries]), None)
            elif m == "semantic":
                for sp in spaces:
                    s, cov = self.semantic_scores(vecs[sp], ids, sp)
                    if cov.any():
                        parts[f"semantic:{sp}"] = (s, cov)
            elif m == "zeroshot":
                sp = spaces[0]
                s, cov = self.zero_shot_scores(vecs[sp], ids, sp)
                if cov.any():
                    parts[f"zeroshot:{sp}"] = (s, cov)
                    evidence[f"zeroshot:{sp}"] = self.class_similarity(vecs[sp], sp).max(axis=1)
            elif m == "bridge":
                for sp in spaces:
                    kind = "bridge" if sp == MINILM else f"bridge_{sp}"
                    if self.has_vectors(kind):
                        s, cov = self.vector_scores(kind, vecs[sp], ids)
                        hub = self.values(f"hub:{kind}", ids) if HUB_PENALTY.get(f"bridge:{sp}") else None
                        if hub is not None:  # ranked by cosine minus hubness; evidence from the cosine
                            evidence[f"bridge:{sp}"] = (np.where(cov, s, -np.inf).max(axis=1) if cov.any()
                                                        else np.full(len(s), -np.inf))
                            s = s - HUB_PENALTY[f"bridge:{sp}"] * hub[None, :]
                        parts[f"bridge:{sp}"] = (s, cov)
            elif m in extra and self.has_vectors(m):
                parts[m] = self.vector_scores(m, extra[m], ids)
        if not parts:
            return np.zeros((len(queries), len(ids)))
        fused = fuse(parts, weights)
        if not readable_scores:
            return fused
        w = part_weights(parts, weights)
        return readable(fused, parts, evidence, sum(w.values()))

    def search(self, query: str, k: int = 10, min_score: float | None = None,
               **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores on the 0–1 scale of ``scale``, image ids) for one text query (hybrid of
        every available method); with ``min_score`` only hits scoring at least that."""
        ids, S = self.score([query], readable_scores=True, **kwargs)
        if not len(ids):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        s = S[0]
        if len(s) > 4 * k:  # the k best (and their ties at the k-th score) only, then sorted
            cut = -np.partition(-s, k - 1)[k - 1]
            top = np.flatnonzero(s >= cut)
            order = top[np.argsort(-s[top], kind="stable")][:k]
        else:
            order = np.argsort(-s, kind="stable")[:k]
        if min_score is not None:
            order = order[s[order] >= min_score]
        return s[order].astype(np.float32), ids[order]
