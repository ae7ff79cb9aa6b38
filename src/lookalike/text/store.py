"""``TextIndex``: per-image text, class probabilities and text-space vectors in SQLite, searched by
keyword (FTS5 bm25), by meaning (MiniLM), zero-shot (ImageNet classes), and by learned or CLIP
image vectors, fused into one ranking (``fusion``).

Tables (prefixed ``text_``; they live in the index's ``catalog.sqlite``):
  text_entries(id, image_id, source, text, weight, emb)   one row per piece of text
  text_fts_tri / text_fts_words                           FTS5 over text: trigram (any script,
                                                          Chinese included) and porter+unicode61 words
  text_classes(image_id, class_id, prob)                  top-k ImageNet probabilities (sparse)
  text_vectors(kind, image_id, vec)                       image vectors in a text space ("bridge", "clip")
"""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lookalike.text.classes import class_names, prompt_embeddings, softmax
from lookalike.text.fusion import fuse
from lookalike.text.glossary import has_cjk, translate
from lookalike.text.sources import TextEntry

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

STOPWORDS = frozenset("a an the of in on at to and or is are with for by from its it this that as be".split())
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")
# sources whose text is embedded for the semantic score ("class" entries are scored zero-shot)
SEMANTIC_SOURCES = ("tag", "caption", "meta", "ocr", "filename")
TOP_CLASSES = 20  # class probabilities kept per image
AUTO_TAGS = 5  # of which the best are also stored as "class" text entries (keyword search, display)


class TextIndex:
    """Text search over one SQLite database (a path, or a connection shared with the catalog)."""

    def __init__(self, db: str | Path | sqlite3.Connection, encoder: Any = None,
                 zero_shot_temperature: float = 0.05) -> None:
        self.db = db if isinstance(db, sqlite3.Connection) else sqlite3.connect(str(db), isolation_level=None)
        self._encoder = encoder
        self.tq = zero_shot_temperature
        self._cache: dict[str, Any] = {}
        self.ensure_schema(self.db)

    @staticmethod
    def ensure_schema(db: sqlite3.Connection) -> None:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='text_vectors'").fetchone() is None:
            for stmt in SCHEMA:  # execute (not executescript): safe inside an open transaction
                db.execute(stmt)

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from lookalike.text.encoder import sentence_encoder

            self._encoder = sentence_encoder()
        return self._encoder

    def _changed(self) -> None:
        self._cache.clear()

    # -- writing -----------------------------------------------------------------------------
    def add(self, image_id: int, entries: Iterable[TextEntry], replace_sources: Sequence[str] = ()) -> None:
        """Add text entries of an image; first drop its entries of ``replace_sources``."""
        for src in replace_sources:
            self.db.execute("DELETE FROM text_entries WHERE image_id=? AND source=?", (int(image_id), src))
        rows = [(int(image_id), e.source, e.text.strip(), float(e.weight)) for e in entries if e.text.strip()]
        self.db.executemany("INSERT INTO text_entries(image_id, source, text, weight) VALUES (?, ?, ?, ?)", rows)
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
            self.add(iid, [TextEntry("class", names[c], float(row[c])) for c in order[:auto_tags]],
                     replace_sources=("class",))
        self._changed()

    def copy_classes(self, source_id: int, image_id: int) -> None:
        """Give ``image_id`` the class probabilities and class tags of ``source_id`` (same content)."""
        src, dst = int(source_id), int(image_id)
        self.db.execute("DELETE FROM text_classes WHERE image_id=?", (dst,))
        self.db.execute("INSERT INTO text_classes(image_id, class_id, prob) "
                        "SELECT ?, class_id, prob FROM text_classes WHERE image_id=?", (dst, src))
        self.db.execute("DELETE FROM text_entries WHERE image_id=? AND source='class'", (dst,))
        self.db.execute("INSERT INTO text_entries(image_id, source, text, weight) "
                        "SELECT ?, source, text, weight FROM text_entries WHERE image_id=? AND source='class'",
                        (dst, src))
        self._changed()

    def set_vectors(self, kind: str, image_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Image vectors in a text space (``kind`` "bridge" or "clip"), L2-normalised here."""
        v = np.asarray(vectors, np.float32)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        self.db.executemany("INSERT OR REPLACE INTO text_vectors(kind, image_id, vec) VALUES (?, ?, ?)",
                            [(kind, int(i), x.tobytes()) for i, x in zip(image_ids, v)])
        self._changed()

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
    def keyword_scores(self, query: str, ids: np.ndarray | None = None) -> np.ndarray:
        """Σ over an image's matching entries of weight · bm25 relevance (0 = no match), aligned
        with ``ids``. English words use the porter/unicode61 table; CJK runs of 3+ characters the
        trigram table; shorter CJK runs (e.g. "猫") a substring scan."""
        ids = self.image_ids() if ids is None else ids
        pos = {int(i): j for j, i in enumerate(ids)}
        out = np.zeros(len(ids), np.float64)
        words = [w for w in re.findall(r"[^\W_]+", _CJK_RUN.sub(" ", query.lower())) if w not in STOPWORDS]
        if has_cjk(query):
            words += [w for w in re.findall(r"[a-z]+", translate(query).lower()) if w not in STOPWORDS]
        hits: list[tuple[int, float]] = []
        if words:
            expr = " OR ".join('"' + w.replace('"', '""') + '"' for w in dict.fromkeys(words))
            hits += self.db.execute(
                "SELECT e.image_id, -bm25(text_fts_words) * e.weight FROM text_fts_words "
                "JOIN text_entries e ON e.id = text_fts_words.rowid WHERE text_fts_words MATCH ?", (expr,)).fetchall()
        for run in _CJK_RUN.findall(query):
            if len(run) >= 3:
                hits += self.db.execute(
                    "SELECT e.image_id, -bm25(text_fts_tri) * e.weight FROM text_fts_tri "
                    "JOIN text_entries e ON e.id = text_fts_tri.rowid WHERE text_fts_tri MATCH ?",
                    ('"' + run + '"',)).fetchall()
            else:  # trigram FTS cannot match 1-2 characters: scan, relevance 1 per occurrence
                hits += self.db.execute(
                    "SELECT image_id, weight * (length(text) - length(replace(text, ?, ''))) / length(?) "
                    "FROM text_entries WHERE instr(text, ?) > 0", (run, run, run)).fetchall()
        for iid, s in hits:
            j = pos.get(int(iid))
            if j is not None:
                out[j] += max(float(s), 1e-6)
        return out

    def embed_missing(self, image_ids: Sequence[int] | None = None) -> int:
        """Compute and store the embeddings of semantic entries that have none (of ``image_ids``,
        or all): the writer calls this, so that searches only read. Returns how many."""
        q = ",".join("?" * len(SEMANTIC_SOURCES))
        sql = f"SELECT id, text FROM text_entries WHERE emb IS NULL AND source IN ({q})"
        args: list[Any] = list(SEMANTIC_SOURCES)
        if image_ids is not None:
            sql += f" AND image_id IN ({','.join('?' * len(image_ids))})"
            args += [int(i) for i in image_ids]
        missing = self.db.execute(sql, args).fetchall()
        if missing:
            emb = self.encoder.encode([t for _, t in missing]).astype(np.float16)
            self.db.executemany("UPDATE text_entries SET emb=? WHERE id=?",
                                [(e.tobytes(), i) for (i, _), e in zip(missing, emb)])
            self._changed()
        return len(missing)

    def _entry_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image ids, weights, unit embeddings) of the semantic entries, read in one query;
        embeddings an older index lacks are computed in memory (a search never writes)."""
        if "entries" not in self._cache:
            q = ",".join("?" * len(SEMANTIC_SOURCES))
            rows = self.db.execute(f"SELECT id, image_id, weight, emb, text FROM text_entries WHERE source IN ({q})",
                                   SEMANTIC_SOURCES).fetchall()
            missing = [(eid, text) for eid, _, _, blob, text in rows if blob is None]
            extra = dict(zip([e for e, _ in missing], self.encoder.encode([t for _, t in missing]))) if missing else {}
            dim = self.encoder.dim if rows else 1
            E = np.zeros((len(rows), dim), np.float32)
            for j, (eid, _, _, blob, _) in enumerate(rows):
                E[j] = np.frombuffer(blob, np.float16) if blob is not None else extra[eid]
            self._cache["entries"] = (np.array([r[1] for r in rows], np.int64),
                                      np.array([r[2] for r in rows], np.float32), E)
        return self._cache["entries"]

    def semantic_scores(self, qvecs: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Q, N) best weighted cosine between the query and an image's texts; and which images have any."""
        ids = self.image_ids() if ids is None else ids
        img, w, E = self._entry_matrix()
        out = np.full((len(qvecs), len(ids)), -np.inf, np.float32)
        if len(img):
            pos = np.searchsorted(ids, img)
            ok = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == img)
            if ok.any():
                sims = (np.asarray(qvecs, np.float32) @ E[ok].T) * w[ok]
                np.maximum.at(out.T, pos[ok], sims.T)  # per image: its best entry
        covered = np.isfinite(out[0]) if len(out) else np.zeros(len(ids), bool)
        return np.where(np.isfinite(out), out, 0.0), covered

    def class_matrix(self, ids: np.ndarray | None = None) -> np.ndarray:
        """(N, 1000) sparse class probabilities as a dense matrix, rows L2-normalised."""
        ids = self.image_ids() if ids is None else ids
        key = ("classes", ids.tobytes())
        if self._cache.get("classes_key") != key:
            P = np.zeros((len(ids), 1000), np.float32)
            pos = {int(i): j for j, i in enumerate(ids)}
            for iid, c, p in self.db.execute("SELECT image_id, class_id, prob FROM text_classes"):
                j = pos.get(int(iid))
                if j is not None:
                    P[j, c] = p
            P /= np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-12)
            self._cache["classes_key"], self._cache["classes"] = key, P
        return self._cache["classes"]

    def zero_shot_scores(self, qvecs: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Q, N): cosine between the query's class distribution, softmax(sim(query, "a photo of a
        {class}.") / T), and each image's (sparse, top-k) classifier distribution."""
        P = self.class_matrix(ids)
        sims = np.asarray(qvecs, np.float32) @ prompt_embeddings(self.encoder).T
        W = softmax(sims / self.tq)
        return W @ P.T, P.any(axis=1)

    def vector_scores(self, kind: str, qvecs: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Q, N) cosine between query vectors and the images' ``kind`` vectors."""
        ids = self.image_ids() if ids is None else ids
        ck = ("vec", kind, ids.tobytes())
        if self._cache.get(("veckey", kind)) != ck:
            pos = {int(i): j for j, i in enumerate(ids)}
            rows = self.db.execute("SELECT image_id, vec FROM text_vectors WHERE kind=?", (kind,)).fetchall()
            dim = len(rows[0][1]) // 4 if rows else 1
            V = np.zeros((len(ids), dim), np.float32)
            cov = np.zeros(len(ids), bool)
            for iid, blob in rows:
                j = pos.get(int(iid))
                if j is not None:
                    V[j], cov[j] = np.frombuffer(blob, np.float32), True
            self._cache[("veckey", kind)], self._cache[("vec", kind)] = ck, (V, cov)
        V, cov = self._cache[("vec", kind)]
        return np.asarray(qvecs, np.float32) @ V.T, cov

    # -- search ------------------------------------------------------------------------------
    def score(self, queries: Sequence[str], methods: Sequence[str] = ("keyword", "semantic", "zeroshot", "bridge"),
              query_vectors: Mapping[str, np.ndarray] | None = None, weights: Mapping[str, float] | None = None,
              ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, fused scores (Q, N)) for several queries. ``query_vectors`` supplies query vectors
        for vector kinds not in the MiniLM space (e.g. ``{"clip": ...}``); "bridge" vectors are
        MiniLM-space. Methods without data (no texts, no vectors of that kind) are left out."""
        ids = self.image_ids() if ids is None else np.asarray(ids, np.int64)
        qv = dict(query_vectors or {})
        needs_minilm = any(m in ("semantic", "zeroshot", "bridge") for m in methods)
        if needs_minilm and "minilm" not in qv:
            qv["minilm"] = self.encoder.encode([translate(q) if has_cjk(q) else q for q in queries])
        parts: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for m in methods:
            if m == "keyword":
                parts[m] = (np.stack([self.keyword_scores(q, ids) for q in queries]) if len(ids)
                            else np.zeros((len(queries), 0)), None)
            elif m == "semantic":
                s, cov = self.semantic_scores(qv["minilm"], ids)
                if cov.any():
                    parts[m] = (s, cov)
            elif m == "zeroshot":
                s, cov = self.zero_shot_scores(qv["minilm"], ids)
                if cov.any():
                    parts[m] = (s, cov)
            elif self.has_vectors(m) and (m == "bridge" or m in qv):
                s, cov = self.vector_scores(m, qv["minilm"] if m == "bridge" else qv[m], ids)
                parts[m] = (s, cov)
        if not parts or not len(ids):
            return ids, np.zeros((len(queries), len(ids)))
        return ids, fuse(parts, weights)

    def search(self, query: str, k: int = 10, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, image ids) for one text query (hybrid of every available method)."""
        ids, S = self.score([query], **kwargs)
        if not len(ids):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        order = np.argsort(-S[0], kind="stable")[:k]
        return S[0, order].astype(np.float32), ids[order]
