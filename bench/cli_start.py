"""Wall and CPU time of whole ``lookalike`` processes (start-up included), e.g. an image search on
a 1,000-image ``gem`` index (``bench/make_gem_index.py``):

    PYTHONPATH=src python bench/cli_start.py --runs 10 -- search QUERY.jpg -i IDX -k 10

Prints the median and best wall time, the median user + system CPU time of the process, and the
1-minute load average before and after (CPU time is far less inflated by a busy machine).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    load0 = os.getloadavg()[0]
    walls, cpus = [], []
    for _ in range(a.runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lookalike", *args], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    print(json.dumps({"command": "lookalike " + " ".join(args), "runs": a.runs,
                      "wall_s_p50": round(float(np.median(walls)), 3), "wall_s_min": round(min(walls), 3),
                      "cpu_s_p50": round(float(np.median(cpus)), 3), "cpu_s_min": round(min(cpus), 3),
                      "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}))


if __name__ == "__main__":
    main()
