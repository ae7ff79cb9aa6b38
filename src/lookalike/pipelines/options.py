"""Pipeline options shared by the deep families (CLI: --max-side, --scales, --flip, --turns, --model)."""
from __future__ import annotations

from typing import Any

# The fast single-scale descriptor: the ``gem`` and ``text`` pipelines, and fine-tuned models' base.
GEM_DEEP = dict(backbone="efficientnet-lite2", aggregator="gem", max_side=352)

# Pipeline options that change how a deep extractor sees an image.
EXTRACTION_OPTIONS = ("max_side", "scales", "flip", "turns", "foreground")


def extraction_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The deep extraction settings among pipeline ``options`` (unset ones left out)."""
    out = {k: options[k] for k in EXTRACTION_OPTIONS if options.get(k) not in (None, False)}
    if "scales" in out:
        scales = out["scales"]
        if isinstance(scales, str):
            scales = [s for s in scales.split(",") if s.strip()]
        out["scales"] = tuple(float(s) for s in scales)
    return out


def deep_options(model: str | None = None, **base: Any) -> tuple[dict[str, Any], list[Any]]:
    """DeepExtractor arguments and post-processing steps; a fine-tuned ``model`` (from
    ``lookalike train``) replaces the backbone weights, GeM exponent and input size, and adds its
    learned whitening. ``base`` (e.g. ``extraction_overrides``) has the last word."""
    if not model:
        return {**GEM_DEEP, **base}, []
    from lookalike.pipelines.models import load_model

    spec = load_model(model)
    return {**GEM_DEEP, **spec.extractor_kwargs(), **base}, spec.post_steps()
