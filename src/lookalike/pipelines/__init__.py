"""Pipelines as data: named pipelines, spec strings that expand to documents, and the wiring of
their extensions. ``build("default+aqe(alpha=3)")`` gives a ``Pipeline``."""
from lookalike.pipelines.options import GEM_DEEP, deep_options, extraction_overrides
from lookalike.pipelines.pipeline import QUERY_TURNS, Pipeline, QueryContext, best_per_id, turned
from lookalike.pipelines.registry import (COMPOSITIONS, RENAMED_BASES, build, check_spec, expand,
                                          list_pipelines, pipelines, rerankers, stored_form, supports_text)
from lookalike.pipelines.spec import SCHEMA_VERSION, PipelineDoc, StepDoc, parse_spec, parse_steps

__all__ = ["GEM_DEEP", "deep_options", "extraction_overrides", "QUERY_TURNS", "Pipeline", "QueryContext",
           "best_per_id", "turned", "COMPOSITIONS", "RENAMED_BASES", "build", "check_spec", "expand",
           "list_pipelines", "pipelines", "rerankers", "stored_form", "supports_text", "SCHEMA_VERSION",
           "PipelineDoc", "StepDoc", "parse_spec", "parse_steps"]
