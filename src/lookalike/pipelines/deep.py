"""The deep global-descriptor pipelines (``factories()``): ``default``, one per aggregation, two fusions,
and whitened forms.

``default``: ``fusion-rmac-gem`` whitened by the whitening that ships with lookalike (learned once
on flickr8k_1k by ``scripts/fit_default_whitening.py``), so it needs no fitting and works from the
first image; the best global descriptor measured (BENCHMARKS.md). With ``model=`` (a fine-tuned
backbone from ``lookalike train``) it is that model's GeM descriptor instead.

``fc``, ``spoc``, ``mac``, ``rmac``, ``gem``, ``crow``, ``scda``, ``pwa``, ``cam``: EfficientNet-Lite2
conv map pooled by that aggregation, L2, cosine. ``fusion-gem-crow``: both from one backbone pass,
concatenated. ``fusion-rmac-gem``: R-MAC and GeM at two scales (long side 352 and 498) from the
same passes; its ``-pcaw`` form whitens each part on its own (1024 axes each). Each name has a
``-pcaw`` form whose PCA-whitening is learned (on the collection when indexing, on ``fit_on`` in
``lookalike eval``) and stored with the index.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable


from lookalike.features.fusion import Fusion
from lookalike.pipelines.options import EXTRACTION_OPTIONS, deep_options, extraction_overrides
from lookalike.pipelines.pipeline import Pipeline
from lookalike.postprocess import PartsWhitening, PCAWhitening
from lookalike.errors import BadInputError, NotFoundError
from lookalike.features.aggregators import AGGREGATORS
from lookalike.features.deep import DeepExtractor

# Options every deep pipeline takes besides the extraction ones (learned steps' data, CLI flags).
PIPELINE_OPTIONS = ("model", "fit_on", "compare")

# Backbone passes shared by every deep pipeline here (see bench/results_global.md).
DEEP_BASE: dict[str, Any] = dict(backbone="efficientnet-lite2", max_side=352, scales=(1.0,), flip=False)

# PCA-whitening of the -pcaw pipelines: 256 axes, eigenvalues regularised by 1% of the largest
# (best on holidays300 when learned on the collection itself; see bench/results_global.md).
WHITEN: dict[str, Any] = dict(dim=256, eps=0.01)

AGGREGATIONS: dict[str, tuple[str, dict[str, Any], str]] = {
    "fc": ("fc", {}, "ImageNet classifier logits (1000-D)"),
    "spoc": ("spoc", {}, "sum pooling (SPoC)"),
    "mac": ("mac", {}, "max pooling (MAC)"),
    "rmac": ("rmac", {}, "regional max pooling (R-MAC, 3 levels)"),
    "gem": ("gem", {}, "generalised-mean pooling (GeM, p=3)"),
    "crow": ("crow", {}, "cross-dimensional weighting (CroW)"),
    "scda": ("scda", {}, "average+max pooling over the main object's mask (SCDA)"),
    "pwa": ("pwa", {}, "part-based weighting with 4 part channels (PWA)"),
    "cam": ("cam", {}, "class-activation-map weighted pooling, top 5 classes"),
}


def aggregation(name: str) -> tuple[str, dict[str, Any], str]:
    """(aggregator, parameters, description) of a registered aggregation (``AGGREGATIONS``, or
    the first line of its module's docstring for one added since)."""
    if name in AGGREGATIONS:
        return AGGREGATIONS[name]
    import sys

    pool = AGGREGATORS.get(name)
    doc = (sys.modules[pool.__module__].__doc__ or name).strip().splitlines()[0].rstrip(".")
    return name, {}, doc


def pool_params(aggregation_name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options that are parameters of the aggregation (``gem(p=4)``, ``crow(a=2)``); an option
    that is neither a parameter nor a pipeline option is a ``BadInputError`` naming both kinds."""
    import inspect

    agg, _, _ = aggregation(aggregation_name)
    sig = inspect.signature(AGGREGATORS.get(agg)).parameters
    known = {n: p for n, p in sig.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    extra = {k: v for k, v in options.items() if k not in (*EXTRACTION_OPTIONS, *PIPELINE_OPTIONS)}
    unknown = sorted(set(extra) - set(known))
    if unknown:
        raise BadInputError(f"{aggregation_name}: unknown option {unknown[0]!r} (aggregation parameters: "
                            f"{', '.join(known) or 'none'}; pipeline options: "
                            f"{', '.join((*EXTRACTION_OPTIONS, *PIPELINE_OPTIONS))})")
    return extra


def deep_extractor(aggregation_name: str, **overrides: Any) -> DeepExtractor:
    agg, params, _ = aggregation(aggregation_name)
    return DeepExtractor(aggregator=agg, **{**DEEP_BASE, **params, **overrides})


def _post(whiten: bool) -> list[Any]:
    return [PCAWhitening(**WHITEN)] if whiten else []


def fine_tuned(name: str, model: str, options: dict[str, Any]) -> Pipeline:
    """The GeM pipeline of a fine-tuned backbone (``lookalike train``), with its learned whitening."""
    kwargs, post = deep_options(model, **extraction_overrides(options))
    return Pipeline(name, DeepExtractor(**kwargs), post=post,
                    description=f"fine-tuned {kwargs['backbone']} from {model}, GeM (p={kwargs['p']:.2f}), "
                                "L2; cosine")


def _single(name: str, whiten: bool) -> Callable[..., Pipeline]:
    _, _, what = aggregation(name)

    def factory(model: str | None = None, **options: Any) -> Pipeline:
        if model and name == "gem" and not whiten:
            return fine_tuned(name, model, options)
        ex = deep_extractor(name, **extraction_overrides(options), **pool_params(name, options))
        return Pipeline(name + ("-pcaw" if whiten else ""), ex, post=_post(whiten),
                        description=f"EfficientNet-Lite2, {what}" + (", PCA-whitened" if whiten else ""))

    factory.__doc__ = f"Deep global descriptor: {what}" + ("; learned PCA-whitening." if whiten else ".")
    return factory


def _fusion(whiten: bool) -> Callable[..., Pipeline]:
    def factory(**options: Any) -> Pipeline:
        over = extraction_overrides(options)
        ex = Fusion(deep_extractor("gem", **over), deep_extractor("crow", **over))
        return Pipeline("fusion-gem-crow" + ("-pcaw" if whiten else ""), ex, post=_post(whiten),
                        description="GeM and CroW from one backbone pass, concatenated"
                        + (", PCA-whitened" if whiten else ""))

    factory.__doc__ = "Deep global descriptor: GeM and CroW concatenated" + (
        "; learned PCA-whitening." if whiten else ".")
    return factory


# The strongest global descriptor measured on holidays300 (BENCHMARKS.md, "Deep global descriptors"):
# R-MAC + GeM, scales 1 and sqrt(2) of a 352 long side, each part whitened apart.
MULTI_SCALE: dict[str, Any] = dict(scales=(1.0, 1.4142))
PARTS_WHITEN: dict[str, Any] = dict(dim=1024, eps=0.1)


def rmac_gem(options: dict[str, Any]) -> Fusion:
    """R-MAC and GeM from the same passes at ``MULTI_SCALE`` (``fusion-rmac-gem`` and ``default``)."""
    over = {**MULTI_SCALE, **extraction_overrides(options)}
    return Fusion(deep_extractor("rmac", **over), deep_extractor("gem", **over))


def parts_whitening(ex: Fusion) -> PartsWhitening:
    """An unfitted whitening of each part of ``ex`` (``PARTS_WHITEN``)."""
    return PartsWhitening([ex.first.dim, ex.second.dim], **PARTS_WHITEN)


def _fusion_rmac_gem(whiten: bool) -> Callable[..., Pipeline]:
    def factory(**options: Any) -> Pipeline:
        ex = rmac_gem(options)
        return Pipeline("fusion-rmac-gem" + ("-pcaw" if whiten else ""), ex,
                            post=[parts_whitening(ex)] if whiten else [],
                            description="R-MAC and GeM at scales 1 and sqrt(2), concatenated"
                            + (", each part PCA-whitened" if whiten else ""))

    factory.__doc__ = "Deep global descriptor: R-MAC and GeM, two scales, concatenated" + (
        "; each part PCA-whitened (learned)." if whiten else ".")
    return factory


# The whitening of ``default``: PartsWhitening(**PARTS_WHITEN) learned on flickr8k_1k's 1000 images
# (never on an evaluated set), stored as float16.
SHIPPED_WHITENING = Path(__file__).with_name("data") / "default-whitening"


@lru_cache(maxsize=1)
def _shipped(parts: tuple[int, ...]) -> PartsWhitening:
    white = PartsWhitening(parts, **PARTS_WHITEN)
    if not (SHIPPED_WHITENING / white.FILE).exists():
        raise NotFoundError(f"{SHIPPED_WHITENING / white.FILE} is missing: reinstall lookalike, "
                                "or run scripts/fit_default_whitening.py")
    white.load(SHIPPED_WHITENING)
    if [w.proj.shape[0] for w in white.whitenings] != list(parts):
        raise ValueError(f"{SHIPPED_WHITENING} does not fit parts {list(parts)}")
    for w in white.whitenings:  # shared by every default pipeline of the process
        w.mean.setflags(write=False)
        w.proj.setflags(write=False)
    return white


def shipped_whitening(ex: Fusion) -> PartsWhitening:
    """``default``'s whitening for ``ex``, read from the package once per process (float32)."""
    loaded = _shipped((ex.first.dim, ex.second.dim))
    white = copy.copy(loaded)  # own objects (load_state replaces their arrays), shared arrays
    white.whitenings = [copy.copy(w) for w in loaded.whitenings]
    return white


def _default(model: str | None = None, fit_on: str | None = None, **options: Any) -> Pipeline:
    """R-MAC + GeM at two scales, each part whitened by the shipped whitening (``model=``: fine-tuned GeM)."""
    if model:
        return fine_tuned("default", model, options)
    ex = rmac_gem(options)
    # ``fit_on`` (lookalike eval --fit-on): learn the whitening on that set instead of the shipped one
    white = parts_whitening(ex) if fit_on else shipped_whitening(ex)
    return Pipeline("default", ex, post=[white],
                        description="EfficientNet-Lite2, R-MAC and GeM at scales 1 and sqrt(2) of a 352 long "
                                    "side, each part PCA-whitened (shipped whitening), concatenated; cosine")


def factories() -> dict[str, Callable[..., Pipeline]]:
    """Every deep pipeline by name: ``default``, one per aggregation, the fusions, their ``-pcaw`` forms."""
    out: dict[str, Callable[..., Pipeline]] = {"default": _default}
    for name in AGGREGATORS.names():  # one pipeline (and its -pcaw form) per registered aggregation
        for whiten in (False, True):
            out[name + ("-pcaw" if whiten else "")] = _single(name, whiten)
    for whiten in (False, True):
        out["fusion-gem-crow" + ("-pcaw" if whiten else "")] = _fusion(whiten)
        out["fusion-rmac-gem" + ("-pcaw" if whiten else "")] = _fusion_rmac_gem(whiten)
    return out
