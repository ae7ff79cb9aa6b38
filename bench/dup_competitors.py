"""Other duplicate finders on one folder, for ``bench/dup_bench.py``; run with a Python that has them
(imagededup and czkawka need packages that cannot live beside lookalike's torch):

    /work/venvs/dupcmp/bin/python bench/dup_competitors.py imagededup-phash|imagededup-cnn|czkawka DIR

Prints one JSON line: {"pairs": [[file, file], ...], "setting": ..., "peak_rss_mb": ...} (file names
relative to DIR). Each tool runs at its recommended setting: imagededup's defaults (PHash max
distance 10, CNN min similarity 0.9), czkawka at similarity 15 (its Python bindings' README).
"""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path


def main() -> None:
    tool, folder = sys.argv[1], Path(sys.argv[2])
    pairs = set()
    if tool.startswith("imagededup"):
        if tool == "imagededup-phash":
            from imagededup.methods import PHash

            found = PHash(verbose=False).find_duplicates(image_dir=str(folder), max_distance_threshold=10)
            setting = "PHash, max_distance_threshold=10"
        else:
            from imagededup.methods import CNN

            found = CNN(verbose=False).find_duplicates(image_dir=str(folder), min_similarity_threshold=0.9)
            setting = "CNN, min_similarity_threshold=0.9"
        for a, dups in found.items():
            for b in dups:
                pairs.add(tuple(sorted((a, b))))
    elif tool == "czkawka":
        from czkawka import ImageSimilarity

        finder = ImageSimilarity()
        finder.set_directories([folder])
        finder.set_similarity(15)
        setting = "similarity 15"
        for group in finder.find_similar():
            names = sorted(str(Path(p).resolve().relative_to(folder.resolve())) for p in group)
            pairs.update((a, b) for i, a in enumerate(names) for b in names[i + 1:])
    else:
        raise SystemExit(f"unknown tool {tool}")
    print(json.dumps({"pairs": sorted(pairs), "setting": setting,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
