"""What the engine answers: search hits with timings, and the report of a write."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Hit:
    id: int
    path: str
    score: float
    rank: int
    width: int | None = None
    height: int | None = None
    taken: str | None = None  # ISO date-time: EXIF DateTimeOriginal, else the file's mtime
    camera: str | None = None
    type: str | None = None

    @classmethod
    def of(cls, row: Any, score: float, rank: int) -> "Hit":
        """A hit on a catalog row (``engine.catalog.ImageRow``), with its metadata."""
        return cls(row.id, row.path, score, rank, row.width, row.height, row.taken, row.camera, row.type)


@dataclass
class SearchResult:
    hits: list[Hit]
    took_ms: float
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"results": [asdict(h) for h in self.hits], "took_ms": round(self.took_ms, 3),
                "timings_ms": {k: round(v, 3) for k, v in self.timings.items()}}


@dataclass
class AddReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    reused: int = 0  # described by reusing the vector of an indexed file with the same content
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        return d
