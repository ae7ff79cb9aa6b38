"""Bounded load test of `lookalike serve` on loopback: requests/s, p50/p99 latency and errors, as JSON.

    python bench/load_test.py --index IDX [--clients 16] [--duration 60] [--image-share 0.2]
                              [--add 1000 --add-via api|process] [--seed-from holidays300]

It starts the server (127.0.0.1, a free port) on an existing index, or first builds one: with
``--seed-from DATASET`` from the shared precomputed descriptors of the ``gem`` pipeline
(~/.cache/lookalike/shared_feats/, no extraction), else ``lookalike index`` of the dataset's images
with ``--pipeline``. Clients send searches by indexed id (``GET /search?id=``) and, a share
``--image-share`` of the time, by uploaded image (``POST /search``). With ``--add N``, N synthetic
images are generated into a temporary folder and indexed while the load runs, through the API
(``POST /images``, ``--add-batch`` per request) or by a separate ``lookalike index`` process; the load
then lasts until the indexing is done (at most ``--max-seconds``), and the final image count is checked.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
from conftest import synthetic_photo  # noqa: E402  (the tests' synthetic photo generator)

import gem_feats  # noqa: E402  (bench/: the gem descriptors, extracted once)

HOST = "127.0.0.1"  # never anything else
MAX_SECONDS, MAX_REQUESTS = 900, 500_000
CLI = [sys.executable, "-c", "from lookalike.cli import main; main()"]


def seed_index(index: Path, dataset: Path) -> None:
    """A ``gem``-pipeline index of ``dataset``'s database from the shared precomputed descriptors."""
    from lookalike.api import Index
    from lookalike.eval.dataset import Dataset

    ds = Dataset.load(dataset)
    feats = gem_feats.load(ds)
    vec = dict(zip(feats["ids"].tolist(), feats["vectors"]))
    idx = Index(index, "gem")
    with idx.catalog.tx() as db:
        for item_id, path in zip(ds.db_ids, ds.db_paths):
            data = Path(path).read_bytes()
            st = os.stat(path)
            w, h = Image.open(path).size
            idx.catalog.put_ok(db, str(Path(path).resolve()), st.st_size, st.st_mtime,
                               hashlib.sha1(data).hexdigest(), w, h, vec[item_id])
    idx.close()
    idx = Index(index)  # the store is rebuilt from the catalog
    idx.save()
    idx.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{n}\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + d + b"\r\n" for n, d in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive HTTP/1.1 connection to the server."""

    def __init__(self, port: int) -> None:
        self.port, self.conn = port, http.client.HTTPConnection(HOST, port, timeout=120)

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        try:
            self.conn.request(method, url, body=body, headers=headers or {})
            r = self.conn.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
            raise


def get_json(port: int, url: str) -> dict:
    status, body = Client(port).request("GET", url)
    if status != 200:
        raise RuntimeError(f"GET {url}: {status} {body[:200]!r}")
    return json.loads(body)


def start_server(index: Path, port: int, token: str) -> subprocess.Popen:
    proc = subprocess.Popen(CLI + ["serve", "--index", str(index), "--port", str(port), "--token", token],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()}")
        try:
            get_json(port, "/healthz")
            return proc
        except (OSError, RuntimeError):
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server did not start in 120 s")


def make_images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"syn{i:05d}.jpg"
        Image.fromarray(synthetic_photo(10_000 + i, size=(320, 240))).save(p, quality=90)
        out.append(p)
    return out


def summary(lat_ms: list[float]) -> dict[str, float]:
    if not lat_ms:
        return {"n": 0}
    a = np.array(lat_ms)
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 2), "p90": round(float(np.percentile(a, 90)), 2),
            "p99": round(float(np.percentile(a, 99)), 2), "max": round(float(a.max()), 2)}


def run(args: argparse.Namespace) -> dict:
    index = Path(args.index)
    dataset = Path(args.dataset)
    if not (index / "catalog.sqlite").exists():
        if args.seed_from:
            seed_index(index, Path(args.datasets) / args.seed_from)
        else:
            subprocess.run(CLI + ["index", str(dataset / "images"), "--index", str(index), "--pipeline",
                                  args.pipeline, "--quiet"], check=True)
    queries = [p.read_bytes() for p in sorted((dataset / "images").glob("*.jpg"))[:50]]
    port, token = free_port(), secrets.token_urlsafe(16)
    server = start_server(index, port, token)
    stop, lock = threading.Event(), threading.Lock()
    records: list[tuple[str, float, bool]] = []
    errors: list[str] = []
    add_state: dict = {}
    cleanup: list[Path] = []  # the generated images (the rows indexing them are left dangling)
    try:
        start = get_json(port, "/stats")
        ids = [it["id"] for it in get_json(port, "/images?limit=1000")["items"]]
        budget = min(args.max_requests, MAX_REQUESTS)

        def client_loop(seed: int) -> None:
            rnd, c = random.Random(seed), Client(port)
            while not stop.is_set():
                kind = "image" if rnd.random() < args.image_share else "id"
                t0 = time.perf_counter()
                try:
                    if kind == "id":
                        status, body = c.request("GET", f"/search?id={rnd.choice(ids)}&k={args.k}")
                    else:
                        data, ctype = multipart([("q.jpg", rnd.choice(queries))])
                        status, body = c.request("POST", f"/search?k={args.k}", data, {"Content-Type": ctype})
                    ok = status == 200 and len(json.loads(body)["results"]) > 0
                    err = None if ok else f"{kind}: HTTP {status} {body[:120]!r}"
                except Exception as e:  # noqa: BLE001 - every failure is counted
                    ok, err = False, f"{kind}: {type(e).__name__}: {e}"
                with lock:
                    records.append((kind, (time.perf_counter() - t0) * 1000, ok))
                    if err:
                        errors.append(err)
                    if len(records) >= budget:
                        stop.set()

        adder = None
        if args.add:
            tmp = Path(tempfile.mkdtemp(prefix="lookalike-load-"))
            cleanup.append(tmp)
            files = make_images(tmp / "new", args.add)
            adder = threading.Thread(target=add_job, args=(args, port, token, tmp / "new", files, add_state),
                                     daemon=True)
        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        if adder:
            adder.start()
        limit = min(args.max_seconds, MAX_SECONDS)
        while not stop.is_set():
            elapsed = time.perf_counter() - t0
            adding = adder is not None and adder.is_alive()
            if elapsed >= limit or (elapsed >= args.duration and not adding):
                break
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(timeout=150)
        wall = time.perf_counter() - t0
        if adder:
            adder.join(timeout=60)
        time.sleep(3)  # let the server follow the last changes of another writer
        end = get_json(port, "/stats")
    finally:
        server.terminate()
        server.wait(timeout=30)
        for d in cleanup:
            shutil.rmtree(d, ignore_errors=True)
    lat = [r[1] for r in records]
    out = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "pipeline": start["pipeline"], "images_at_start": start["images"], "images_at_end": end["images"],
        "clients": args.clients, "image_share": args.image_share, "k": args.k, "seconds": round(wall, 1),
        "requests": len(records), "requests_per_s": round(len(records) / wall, 1),
        "latency_ms": summary(lat),
        "latency_ms_by_kind": {k: summary([r[1] for r in records if r[0] == k]) for k in ("id", "image")},
        "errors": len(errors), "error_samples": errors[:5], "server_reloads": end.get("reloads"),
    }
    if args.add:
        add_state["complete"] = end["images"] == start["images"] + args.add
        out["add"] = add_state
    return out


def add_job(args: argparse.Namespace, port: int, token: str, folder: Path, files: list[Path], state: dict) -> None:
    """Index the generated images while the load runs; records time and failures in ``state``."""
    t0 = time.perf_counter()
    state.update(via=args.add_via, images=len(files), failures=0)
    if args.add_via == "process":
        r = subprocess.run(CLI + ["index", str(folder), "--index", args.index, "--quiet", "--json"],
                           capture_output=True, text=True)
        state["failures"] = 0 if r.returncode == 0 else 1
        state["report"] = json.loads(r.stdout) if r.returncode == 0 else r.stderr[-500:]
    else:
        c = Client(port)
        for s in range(0, len(files), args.add_batch):
            batch = [(p.name, p.read_bytes()) for p in files[s:s + args.add_batch]]
            body, ctype = multipart(batch)
            status, resp = c.request("POST", "/images", body, {"Content-Type": ctype,
                                                               "Authorization": f"Bearer {token}"})
            if status not in (200, 201):
                state["failures"] += 1
                state.setdefault("failure_samples", []).append(f"HTTP {status} {resp[:200]!r}")
        state["requests"] = -(-len(files) // args.add_batch)
    state["seconds"] = round(time.perf_counter() - t0, 1)
    state["images_per_s"] = round(len(files) / max(state["seconds"], 1e-9), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True, help="index folder (built if missing)")
    ap.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--dataset", default=None, help="folder whose images/ are the query images "
                                                    "(default: DATASETS/holidays300)")
    ap.add_argument("--seed-from", default=None, help="build a default-pipeline index from this dataset's "
                                                      "shared precomputed descriptors")
    ap.add_argument("--pipeline", default="color", help="pipeline when building with `lookalike index`")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (longer while adding)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help=f"hard cap (at most {MAX_SECONDS})")
    ap.add_argument("--max-requests", type=int, default=200_000, help=f"hard cap (at most {MAX_REQUESTS})")
    ap.add_argument("--image-share", type=float, default=0.2, help="share of searches by uploaded image")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--add", type=int, default=0, help="images to index while the load runs (e.g. 1000)")
    ap.add_argument("--add-via", choices=("api", "process"), default="api")
    ap.add_argument("--add-batch", type=int, default=8, help="images per POST /images")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    args.dataset = args.dataset or str(Path(args.datasets) / "holidays300")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    if not 1 <= args.clients <= 256:
        ap.error("--clients must be 1..256")
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
