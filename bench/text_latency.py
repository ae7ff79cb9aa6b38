"""Text query latency on an existing index: cold ``lookalike search --text`` processes and warm
``GET /search?text=`` requests to ``lookalike serve`` (bound to 127.0.0.1).

    PYTHONPATH=src python bench/text_latency.py --index IDX [--cold 5] [--warm 200] [--json]

Queries alternate between English and Chinese (and one nonsense string); each cold run is a fresh
process (Python start, imports, opening the index, loading the encoders, the query), timed from
outside (wall time, and the child's user + system CPU time, which a busy machine inflates far
less). Warm requests are sent one at a time after 10 warm-up requests; the server's own
``took_ms``, the client round trip and the server process's CPU time per request are reported,
with the 1-minute load average before, between and after.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cold(index: str, n: int, env: dict[str, str]) -> list[dict]:
    out = []
    for i in range(n):
        q = QUERIES[i % len(QUERIES)]
        c = children_cpu()
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "lookalike", "search", "-i", index, "--text", q, "-k", "10",
                            "--json"], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        if r.returncode:
            raise RuntimeError(r.stderr[-2000:])
        res = json.loads(r.stdout)
        out.append({"query": q, "wall_s": round(wall, 3), "cpu_s": round(children_cpu() - c, 3),
                    "took_ms": res["took_ms"], "top_score": res["results"][0]["score"] if res["results"] else None})
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
            if i == 10:
                cpu0 = process_cpu(proc.pid)
            t = time.perf_counter()
            body = urllib.request.urlopen(base + "/search?" + urllib.parse.urlencode({"text": q, "k": 10}),
                                          timeout=60).read()
            if i >= 10:
                rtt.append((time.perf_counter() - t) * 1000)
                took.append(json.loads(body)["took_ms"])
        cpu_ms = (process_cpu(proc.pid) - cpu0) * 1000 / n
        return {"requests": n, "server_cpu_ms_per_request": round(cpu_ms, 2), "rtt_ms_p50": round(float(np.median(rtt)), 2),
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
    load = [os.getloadavg()[0]]
    c = cold(args.index, args.cold, env)
    load.append(os.getloadavg()[0])
    w = warm(args.index, args.warm, env) if args.warm else None
    load.append(os.getloadavg()[0])
    walls = [r["wall_s"] for r in c]
    cpus = [r["cpu_s"] for r in c]
    res = {"cold_runs": c, "cold_wall_s_p50": round(float(np.median(walls)), 3) if walls else None,
           "cold_wall_s_max": round(max(walls), 3) if walls else None,
           "cold_cpu_s_p50": round(float(np.median(cpus)), 3) if cpus else None, "warm": w,
           "load_average_1min": [round(x, 2) for x in load]}
    print(json.dumps(res, ensure_ascii=False, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
