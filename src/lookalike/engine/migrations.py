"""Schema versions of the index folder, and the ordered migrations between them.

    1   lookalike 0.1 and 0.2: settings ``pipeline`` = {spec, options}, ``extractor``, ``store``;
        local features in ``local_features.sqlite``; no stamp of the saved derived state.
    2   the pipeline as one document (``pipelines.spec.PipelineDoc``) in setting ``document``;
        local features in the catalog (``local_features`` table), changed in the writer's batches.
    3   per-image metadata for filters (``engine.metadata``): date taken, camera, type, folder, and
        width / height as the file's pixel size; filled from the files' headers when migrating.
    4   table ``image_hashes``: each image's pixel digest and perceptual hashes (for finding
        copies); images indexed before it have none (they are computed in memory when needed).

``read_document`` interprets any version in memory (a read-only open writes nothing);
``migrate`` writes the current version, by the writer only.
"""
from __future__ import annotations

import logging
import sqlite3
from typing import Any, Callable

from lookalike.engine.catalog import HASHES_SCHEMA, Catalog
from lookalike.engine.folder import IndexFolder
from lookalike.engine import metadata
from lookalike.errors import ConflictError
from lookalike.pipelines import RENAMED_BASES, PipelineDoc, build, parse_spec, stored_form

SCHEMA_VERSION = 4
log = logging.getLogger(__name__)


def version_of(catalog: Catalog) -> int | None:
    """The folder's schema version (None: a new, empty index)."""
    v = catalog.get_setting("schema_version")
    if v is not None:
        return int(v)
    return 1 if catalog.get_setting("pipeline") is not None else None


def _v1_document(catalog: Catalog) -> PipelineDoc:
    """The document a version-1 index stands for. An index built when ``default`` was single-scale
    GeM (``gem`` since 0.2) opens as ``gem``: its stored extractor settings say which it is."""
    stored = catalog.get_setting("pipeline")
    options = dict(stored.get("options") or {})
    doc = parse_spec(stored["spec"], options, store=catalog.get_setting("store") or "auto")
    doc.extractor = catalog.get_setting("extractor")
    new = RENAMED_BASES.get(doc.base)
    if new and doc.extractor is not None and not options.get("model"):
        if stored_form(build(PipelineDoc(doc.base, options)).extractor.config()) != doc.extractor and \
                stored_form(build(PipelineDoc(new, options)).extractor.config()) == doc.extractor:
            log.info("%s: pipeline %r is called %r since this index was built", catalog.path.parent, doc.base, new)
            doc.base = new
    return doc


def read_document(catalog: Catalog) -> PipelineDoc | None:
    """The index's pipeline document, whatever the schema version (None for a new index)."""
    version = version_of(catalog)
    if version is None:
        return None
    if version > SCHEMA_VERSION:
        raise ConflictError(f"{catalog.path.parent} was written by a newer lookalike (index schema {version}; "
                            f"this one reads up to {SCHEMA_VERSION}): upgrade lookalike")
    if version == 1:
        return _v1_document(catalog)
    return PipelineDoc.from_dict(catalog.get_setting("document"))


def _move_local_features(folder: IndexFolder, db: sqlite3.Connection) -> bool:
    """Copy the rows of 0.2's ``local_features.sqlite`` (of images still indexed) into the catalog."""
    legacy = folder.path / IndexFolder.LEGACY_LOCAL_FEATURES
    if not legacy.exists():
        return False
    from lookalike.features.local.store import LocalFeatureStore

    LocalFeatureStore(db)  # the table
    ok = {r[0] for r in db.execute("SELECT id FROM images WHERE status='ok'")}
    src = sqlite3.connect(f"file:{legacy}?mode=ro", uri=True)
    try:
        rows = [r for r in src.execute("SELECT * FROM local_features") if r[0] in ok]
    finally:
        src.close()
    db.executemany("INSERT OR REPLACE INTO local_features VALUES (?,?,?,?,?,?,?,?,?)", rows)
    return True


def _to_v2(catalog: Catalog, folder: IndexFolder, db: sqlite3.Connection) -> Callable[[], None]:
    doc = _v1_document(catalog)
    catalog.set_setting("document", doc.to_dict(), db)
    for key in ("pipeline", "extractor", "store"):
        db.execute("DELETE FROM settings WHERE key=?", (key,))
    moved = _move_local_features(folder, db)

    def after_commit() -> None:
        if moved:
            (folder.path / IndexFolder.LEGACY_LOCAL_FEATURES).unlink(missing_ok=True)
    return after_commit


def _to_v3(catalog: Catalog, folder: IndexFolder, db: sqlite3.Connection) -> Callable[[], None]:
    metadata.add_columns(db)
    metadata.fill_missing(db)
    return catalog.forget_columns


def _to_v4(catalog: Catalog, folder: IndexFolder, db: sqlite3.Connection) -> Callable[[], None]:
    for statement in HASHES_SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    return lambda: None


MIGRATIONS: dict[int, Callable[[Catalog, IndexFolder, sqlite3.Connection], Callable[[], None]]] = {
    1: _to_v2, 2: _to_v3, 3: _to_v4}


def migrate(catalog: Catalog, folder: IndexFolder) -> int:
    """Bring the folder to ``SCHEMA_VERSION``, one migration per version, each in one transaction;
    returns how many ran. The caller holds the write lock."""
    ran = 0
    while True:
        version = version_of(catalog)
        if version is None or version >= SCHEMA_VERSION:
            return ran
        with catalog.tx() as db:
            after = MIGRATIONS[version](catalog, folder, db)
            catalog.set_setting("schema_version", version + 1, db)
        after()
        log.info("%s: index schema %d -> %d", folder.path, version, version + 1)
        ran += 1


def new_settings(doc: PipelineDoc, db: sqlite3.Connection, catalog: Catalog, versions: dict[str, Any]) -> None:
    """Write what a new index records about itself."""
    catalog.set_setting("document", doc.to_dict(), db)
    catalog.set_setting("schema_version", SCHEMA_VERSION, db)
    catalog.set_setting("versions", versions, db)
    metadata.add_columns(db)  # the indexes of the metadata columns
