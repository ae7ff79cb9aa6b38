"""Reader of the benchmark format (``gt.json``, format ``lookalike-benchmark/1``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.errors import BadInputError, NotFoundError


@dataclass
class Query:
    relevant: list[str]
    junk: list[str] = field(default_factory=list)
    image: Path | None = None
    text: str | None = None


@dataclass
class Dataset:
    root: Path
    name: str
    task: str
    db_ids: list[str]
    db_paths: list[Path]
    queries: list[Query]
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path) -> "Dataset":
        root = Path(root)
        gt_path = root / "gt.json"
        if not gt_path.exists():
            raise NotFoundError(f"{root}: no gt.json (not a dataset in the benchmark format)")
        gt = json.loads(gt_path.read_text())
        if not str(gt.get("format", "")).startswith("lookalike-benchmark/"):
            raise BadInputError(f"{gt_path}: unknown format {gt.get('format')!r}")
        db_dir = root / gt.get("db_dir", "images")
        queries = [Query(relevant=list(q.get("relevant", [])), junk=list(q.get("junk", [])),
                         image=(root / q["image"]) if q.get("image") else None, text=q.get("text"))
                   for q in gt["queries"]]
        return cls(root, gt.get("name", root.name), gt.get("task", "image"),
                   [d["id"] for d in gt["db"]], [db_dir / d["file"] for d in gt["db"]],
                   queries, dict(gt.get("labels", {})))

    def restrict_classes(self, classes: set[str]) -> "Dataset":
        """Only the db images (and queries) whose label is in ``classes``."""
        return self.restrict_ids({d for d in self.db_ids if self.labels.get(d) in classes})

    def restrict_ids(self, wanted: set[str]) -> "Dataset":
        """Only the labelled db images whose id is in ``wanted`` (and the queries left with a match)."""
        keep = [i for i, d in enumerate(self.db_ids) if d in wanted and d in self.labels]
        ids = {self.db_ids[i] for i in keep}
        qs = []
        for q in self.queries:
            rel = [r for r in q.relevant if r in ids]
            if rel:
                qs.append(Query(rel, [j for j in q.junk if j in ids], q.image, q.text))
        return Dataset(self.root, self.name, self.task, [self.db_ids[i] for i in keep],
                       [self.db_paths[i] for i in keep], qs, {d: self.labels[d] for d in ids})
