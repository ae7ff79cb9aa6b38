"""Text query latency on an existing index: cold ``lookalike search --text`` processes and warm
``GET /search?text=`` requests to ``lookalike serve`` (bound to 127.0.0.1).

    PYTHONPATH=src python bench/text_latency.py --index IDX [--cold 5] [--warm 200] [--json]

Queries alternate between English and Chinese (and one nonsense string); each cold run is a fresh
process (Python start, imports, opening the index, loading the encoders, the query), timed from
outside. Warm requests are sent one at a time after 10 warm-up requests; the server's own
``took_ms`` and the client round trip are both reported.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

QUERIES = ["a dog running on the grass", "一只狗在草地上奔跑", "two children playing on the beach",
           "穿着红色衣服的女人", "a man riding a bike", "雪地里的人", "zzzqqq"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold(index: str, n: int, env: dict[str, str]) -> list[dict]:
    out = []
    for i in range(n):
        q = QUERIES[i % len(QUERIES)]
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "lookalike", "search", "-i", index, "--text", q, "-k", "10",
                            "--json"], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        if r.returncode:
            raise RuntimeError(r.stderr[-2000:])
        res = json.loads(r.stdout)
        out.append({"query": q, "wall_s": round(wall, 3), "took_ms": res["took_ms"],
                    "top_score": res["results"][0]["score"] if res["results"] else None})
    return out


def warm(index: str, n: int, env: dict[str, str]) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "-i", index, "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/search?text=warmup&k=1", timeout=30).read()
                break
            except OSError:
                time.sleep(0.2)
        rtt, took = [], []
        for i in range(n + 10):
            q = QUERIES[i % len(QUERIES)]
            t = time.perf_counter()
            body = urllib.request.urlopen(base + "/search?" + urllib.parse.urlencode({"text": q, "k": 10}),
                                          timeout=60).read()
            if i >= 10:
                rtt.append((time.perf_counter() - t) * 1000)
                took.append(json.loads(body)["took_ms"])
        return {"requests": n, "rtt_ms_p50": round(float(np.median(rtt)), 2),
                "rtt_ms_p90": round(float(np.percentile(rtt, 90)), 2),
                "took_ms_p50": round(float(np.median(took)), 2)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True)
    ap.add_argument("--cold", type=int, default=5)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    c = cold(args.index, args.cold, env)
    w = warm(args.index, args.warm, env) if args.warm else None
    walls = [r["wall_s"] for r in c]
    res = {"cold_runs": c, "cold_wall_s_p50": round(float(np.median(walls)), 3) if walls else None,
           "cold_wall_s_max": round(max(walls), 3) if walls else None, "warm": w}
    print(json.dumps(res, ensure_ascii=False, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
