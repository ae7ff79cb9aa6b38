"""The one place where pipelines are wired: named base pipelines, re-rank steps, extensions.

``build`` turns a spec string or a document into a ``Pipeline``: the base's factory (from the
families listed in ``FAMILIES``), its steps (``lookalike.rerank.RERANKERS``) with their parameters,
and the extensions the pipeline declares (text search, local features for verification), which the
engine's writer keeps up to date with every add and remove.
"""
from __future__ import annotations

import inspect
import json
from functools import lru_cache
from typing import Any, Callable

from lookalike.errors import BadInputError, NotFoundError
from lookalike.pipelines.pipeline import Pipeline
from lookalike.pipelines.spec import PipelineDoc, StepDoc, parse_spec
from lookalike.registry import Registry

PipelineFactory = Callable[..., Pipeline]

# Modules with a ``factories() -> {name: factory}`` function: adding a family is one module + one line.
FAMILIES = (
    "lookalike.pipelines.color",
    "lookalike.pipelines.deep",
    "lookalike.pipelines.local",
    "lookalike.pipelines.text",
)

# Bases whose meaning changed: an index built under the old name whose extractor matches the new
# name's opens under the new name (``default`` was single-scale GeM until version 0.2).
RENAMED_BASES: dict[str, str] = {"default": "gem"}

# Re-ranked pipelines worth naming (any BASE+STEP... spec works; these are the measured ones).
COMPOSITIONS = ["default+aqe", "default+dba+aqe", "default+krnn", "default+diffusion", "default+sv"]


@lru_cache(maxsize=1)
def pipelines() -> Registry[PipelineFactory]:
    """Every named base pipeline (filled once, from ``FAMILIES``)."""
    import importlib

    reg: Registry[PipelineFactory] = Registry("pipeline")
    for mod in FAMILIES:
        for name, factory in importlib.import_module(mod).factories().items():
            reg.add(name, factory)
    return reg


def factory(name: str) -> PipelineFactory:
    """The factory of the base pipeline ``name``, importing the families only until one has it:
    the family named like the base first, then in order (a process that searches a ``gem`` or
    ``text`` index never imports the local-feature family)."""
    import importlib

    if pipelines.cache_info().currsize:
        return pipelines().get(name)
    for mod in sorted(FAMILIES, key=lambda m: m.rsplit(".", 1)[1] != name):
        found = importlib.import_module(mod).factories().get(name)
        if found is not None:
            return found
    return pipelines().get(name)  # the error, naming every known pipeline


def rerankers() -> Registry[Any]:
    from lookalike.rerank import load

    return load()


def stored_form(config: Any) -> Any:
    """Settings as an index keeps them (through JSON: tuples become lists)."""
    return json.loads(json.dumps(config))


def build(spec: str | PipelineDoc, **options: Any) -> Pipeline:
    """A pipeline from a spec string (``"default+aqe(alpha=3)"``) or a document; ``options`` join
    the base's options (CLI flags such as ``max_side``)."""
    doc = parse_spec(spec, options) if isinstance(spec, str) else _with_options(spec, options)
    make = factory(doc.base)
    try:
        pipe = make(**doc.options)
    except TypeError as e:
        raise BadInputError(f"pipeline {doc.base!r}: {e}") from None
    for s in doc.steps:
        cls = rerankers().get(s.name)
        try:
            step = cls(**s.params)
        except TypeError as e:
            raise BadInputError(str(e)) from None
        step.name = s.name
        pipe.steps.append(step)
    filled = PipelineDoc(doc.base, dict(doc.options), [StepDoc(s.name, dict(s.params)) for s in pipe.steps],
                         doc.store, stored_form(pipe.extractor.config()))
    pipe.document = filled
    pipe.extensions = extensions_for(pipe)
    return pipe


def _with_options(doc: PipelineDoc, options: dict[str, Any]) -> PipelineDoc:
    extra = {k: v for k, v in options.items() if v is not None}
    if not extra:
        return doc
    return PipelineDoc(doc.base, {**doc.options, **extra}, list(doc.steps), doc.store, doc.extractor)


def extensions_for(pipe: Pipeline) -> list[Any]:
    """The per-image extras a pipeline's index keeps: text rows for pipelines that search by text,
    local features for pipelines that verify."""
    out: list[Any] = []
    if pipe.supports_text or pipe.extractor.gives_logits:
        from lookalike.pipelines.text import TextExtension

        out.append(TextExtension())
    sv = [s for s in pipe.steps if s.name == "sv"]
    if sv:
        from lookalike.pipelines.local import LocalFeaturesExtension

        out.append(LocalFeaturesExtension(sv[0].detector))
    return out


def supports_text(pipe: Pipeline) -> bool:
    return any(getattr(e, "searches_text", False) for e in pipe.extensions)


def expand(spec: str, **options: Any) -> dict[str, Any]:
    """The document a spec string expands to, with every default filled (``pipelines --json``)."""
    pipe = build(spec, **options)
    doc = pipe.document.to_dict()
    doc["base"]["defaults"] = factory_defaults(pipelines().get(pipe.document.base))
    doc["post"] = [p.config() for p in pipe.post]
    doc["extensions"] = [e.name for e in pipe.extensions]
    return doc


def factory_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    return {n: p.default for n, p in inspect.signature(factory).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _first_line(obj: Any) -> str:
    doc = (obj.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def list_pipelines() -> list[dict[str, Any]]:
    """Every base pipeline, re-rank step and named re-ranked pipeline with a one-line description."""
    reg, steps = pipelines(), rerankers()
    out: list[dict[str, Any]] = [
        {"name": n, "kind": "pipeline", "description": _first_line(reg.get(n)),
         "options": factory_defaults(reg.get(n))} for n in reg.names()]
    out += [{"name": n, "kind": "rerank step", "description": _first_line(steps.get(n)),
             "params": steps.get(n).defaults()} for n in steps.names()]
    for spec in COMPOSITIONS:
        doc = parse_spec(spec)
        out.append({"name": spec, "kind": "re-ranked pipeline",
                    "description": f"{doc.base}, then " + ", then ".join(
                        _first_line(steps.get(s.name)).split(":")[0].rstrip(".") for s in doc.steps) + "."})
    return out


def check_spec(spec: str) -> None:
    """Raise ``NotFoundError`` / ``BadInputError`` for a spec that names nothing known, cheaply
    (without building models): for validating options before anything is created."""
    doc = parse_spec(spec)
    factory(doc.base)
    for s in doc.steps:
        cls = rerankers().get(s.name)
        unknown = set(s.params) - set(cls.defaults())
        if unknown:
            raise BadInputError(f"{s.name}: unknown parameters {sorted(unknown)} "
                                f"(known: {', '.join(sorted(cls.defaults())) or 'none'})")


__all__ = ["build", "expand", "list_pipelines", "pipelines", "rerankers", "check_spec", "stored_form",
           "RENAMED_BASES", "COMPOSITIONS", "NotFoundError", "supports_text"]
