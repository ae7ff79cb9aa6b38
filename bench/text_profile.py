"""Where a text query's time goes, inside one process: the first query (loading the encoders and
reading the index's text matrices) and warm queries, in CPU time (robust to a busy machine) and
wall time, per part of ``TextIndex.search``.

    PYTHONPATH=src python bench/text_profile.py --index IDX [--warm 140] [--json]

Parts: query embedding per encoder (MiniLM, USE), keyword (FTS5), semantic (entry embeddings),
zero-shot (classes), bridge (image vectors), and the rest (fusion, the readable scale, top-k).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

QUERIES = ["a dog running on the grass", "一只狗在草地上奔跑", "two children playing on the beach",
           "穿着红色衣服的女人", "a man riding a bike", "雪地里的人", "zzzqqq"]
PARTS = {"keyword_scores": "keyword", "semantic_scores": "semantic", "zero_shot_scores": "zero-shot",
         "vector_scores": "bridge", "query_vectors": "embed"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True)
    ap.add_argument("--warm", type=int, default=140)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    c0, t0 = time.process_time(), time.perf_counter()
    import lookalike
    from lookalike.text.store import TextIndex

    cpu: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        def run(*a, **kw):
            c, t = time.process_time(), time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                cpu[name] += time.process_time() - c
                wall[name] += time.perf_counter() - t
        return run

    for attr, name in PARTS.items():
        setattr(TextIndex, attr, timed(name, getattr(TextIndex, attr)))
    imports = {"cpu_s": round(time.process_time() - c0, 3), "wall_s": round(time.perf_counter() - t0, 3)}
    c, t = time.process_time(), time.perf_counter()
    idx = lookalike.open(Path(args.index), readonly=True)
    opened = {"cpu_s": round(time.process_time() - c, 3), "wall_s": round(time.perf_counter() - t, 3)}

    def run(queries):
        cpu.clear()
        wall.clear()
        c, t = time.process_time(), time.perf_counter()
        for q in queries:
            idx.search(text=q, k=10)
        n = len(queries)
        tot_c, tot_w = time.process_time() - c, time.perf_counter() - t
        parts = {k: round(v * 1000 / n, 2) for k, v in cpu.items()}
        parts["other"] = round(tot_c * 1000 / n - sum(cpu.values()) * 1000 / n, 2)
        return {"queries": n, "cpu_ms_per_query": round(tot_c * 1000 / n, 2),
                "wall_ms_per_query": round(tot_w * 1000 / n, 2), "cpu_ms_by_part": parts}

    first = run(QUERIES[:2])  # one English and one Chinese query: both encoders loaded
    warm = run([QUERIES[i % len(QUERIES)] for i in range(args.warm)])
    res = {"index": args.index, "images": len(idx.catalog.ok_ids()), "imports": imports, "open": opened,
           "first_two_queries": first, "warm": warm, "load_average_1min": round(os.getloadavg()[0], 2)}
    print(json.dumps(res, ensure_ascii=False, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
