"""Re-measures the quality figures BENCHMARKS.md records for the `lookalike eval` pipelines and
prints them beside the recorded ones (a check that a change to the core kept every figure).

    PYTHONPATH=src python bench/core_figures.py --data ../shared/datasets [--only holidays300] [--json out.json]

Each row is exactly `lookalike eval DATASET -p SPEC [--rotate] [--split ...] --json` (the same
function, in one process, so descriptors extracted once are reused through the eval cache).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lookalike.eval.runner import evaluate

# (dataset, spec, flags, metric, recorded value in BENCHMARKS.md before the change)
ROWS: list[tuple[str, str, dict, str, float]] = [
    ("holidays300", "color", {}, "mAP", 0.685),
    ("holidays300", "gem", {}, "mAP", 0.8031),
    ("holidays300", "default", {}, "mAP", 0.8322),
    ("holidays300", "default", {"rotate": True}, "mAP", 0.8631),
    ("holidays300", "gem+aqe", {}, "mAP", 0.8112),
    ("holidays300", "gem+dba", {}, "mAP", 0.8077),
    ("holidays300", "gem+dba+aqe", {}, "mAP", 0.8066),
    ("holidays300", "gem+krnn", {}, "mAP", 0.8145),
    ("holidays300", "gem+diffusion", {}, "mAP", 0.8173),
    ("holidays300", "gem+sv", {}, "mAP", 0.8945),
    ("holidays300", "default+aqe", {}, "mAP", 0.8334),
    ("holidays300", "default+dba", {}, "mAP", 0.8293),
    ("holidays300", "default+dba+aqe", {}, "mAP", 0.8269),
    ("holidays300", "default+krnn", {}, "mAP", 0.8422),
    ("holidays300", "default+diffusion", {}, "mAP", 0.8590),
    ("holidays300", "default+diffusion", {"rotate": True}, "mAP", 0.8587),
    ("holidays300", "default+sv", {}, "mAP", 0.8982),
    ("holidays300", "default+sv", {"rotate": True}, "mAP", 0.9103),
    ("caltech101_97", "gem", {}, "mAP", 0.7502),
    ("caltech101_97", "gem", {}, "P@10", 0.8852),
    ("caltech101_97", "default", {}, "mAP", 0.7575),
    ("caltech101_97", "default", {}, "P@10", 0.8895),
    ("caltech101_97", "default", {"split": "split.json"}, "mAP", 0.8507),
    ("caltech101_97", "gem+aqe", {}, "mAP", 0.7541),
    ("caltech101_97", "gem+dba", {}, "mAP", 0.8252),
    ("caltech101_97", "gem+dba+aqe", {}, "mAP", 0.8270),
    ("caltech101_97", "gem+krnn", {}, "mAP", 0.7709),
    ("caltech101_97", "gem+diffusion", {}, "mAP", 0.8393),
    ("caltech101_97", "default+aqe", {}, "mAP", 0.7582),
    ("caltech101_97", "default+dba", {}, "mAP", 0.7797),
    ("caltech101_97", "default+dba+aqe", {}, "mAP", 0.7863),
    ("caltech101_97", "default+krnn", {}, "mAP", 0.7663),
    ("caltech101_97", "default+diffusion", {}, "mAP", 0.8120),
    ("flickr8k_1k", "text", {}, "R@10", 0.2482),
    ("flickr8k_1k", "text", {"holdout_last": 200}, "R@10", 0.773),
    ("flickr8k_1k", "text", {"holdout_last": 200}, "R@1", 0.303),
]


def command(ds: str, spec: str, flags: dict) -> str:
    extra = "".join(f" --{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in flags.items())
    extra = extra.replace("--split split.json", f"--split ../shared/datasets/{ds}/split.json")
    return f"lookalike eval ../shared/datasets/{ds} -p {spec}{extra} --json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--only", nargs="*", help="datasets to run")
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args()
    done: dict[tuple, dict] = {}
    out = []
    for ds, spec, flags, metric, before in ROWS:
        if args.only and ds not in args.only:
            continue
        key = (ds, spec, json.dumps(flags, sort_keys=True))
        if key not in done:
            kw = dict(flags)
            if "split" in kw:
                kw["split"] = str(Path(args.data) / ds / kw["split"])
            t0 = time.perf_counter()
            done[key] = evaluate(Path(args.data) / ds, spec, **kw)
            done[key]["_s"] = round(time.perf_counter() - t0, 1)
        after = done[key][metric]
        row = {"command": command(ds, spec, flags), "metric": metric, "before": before, "after": after,
               "diff": round(after - before, 4), "seconds": done[key]["_s"]}
        out.append(row)
        print(json.dumps(row), flush=True)
    print("\n| command | metric | recorded | re-measured | difference |\n|---|---|---|---|---|")
    for r in out:
        print(f"| `{r['command']}` | {r['metric']} | {r['before']} | {r['after']} | {r['diff']:+.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    bad = [r for r in out if abs(r["diff"]) > 0.001 + 0.0005 * (len(str(r["before"])) < 6)]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
