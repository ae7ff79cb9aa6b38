"""The colour pipeline: the classic colour vector."""
from __future__ import annotations

from typing import Any, Callable

from lookalike.pipelines.pipeline import Pipeline


def color(compare: str = "pearson", **_: Any) -> Pipeline:
    """HSV colour histograms of 5 regions; Pearson (or bhattacharyya, chi2, cosine by --compare)."""
    from lookalike.features.color import ColorExtractor

    return Pipeline("color", ColorExtractor(compare=compare),
                    description=f"HSV colour histograms of 5 regions, compared by {compare}")


def factories() -> dict[str, Callable[..., Pipeline]]:
    return {"color": color}
