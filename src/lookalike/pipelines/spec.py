"""Pipelines as data: a spec string is a shorthand for a document.

A document names the base pipeline with its options, the re-rank steps with their parameters, and
the vector store; ``SCHEMA_VERSION`` says how to read it. Spec strings expand to documents:

    default                      {"base": {"name": "default", "options": {}}, "steps": []}
    default+aqe(alpha=3)         ... "steps": [{"name": "aqe", "params": {"alpha": 3}}]
    color(compare=chi2)+krnn     ... "base": {"name": "color", "options": {"compare": "chi2"}}

Values are numbers, ``true``/``false``/``none``, or words (quote them, ``'a,b'``, to hold commas
or brackets). ``step:k=v,k=v`` is read as ``step(k=v,k=v)``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from lookalike.errors import BadInputError

SCHEMA_VERSION = 2  # 1: lookalike 0.1-0.2 (settings "pipeline" = {spec, options}); 2: documents

_NAME = re.compile(r"^[A-Za-z][\w.-]*$")


@dataclass
class StepDoc:
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_spec(self) -> str:
        return self.name + _params_str(self.params)


@dataclass
class PipelineDoc:
    """What an index is built with; ``extractor`` (the extractor's settings) is filled by ``build``."""

    base: str
    options: dict[str, Any] = field(default_factory=dict)
    steps: list[StepDoc] = field(default_factory=list)
    store: str = "auto"
    extractor: dict[str, Any] | None = None
    schema: int = SCHEMA_VERSION

    @property
    def spec(self) -> str:
        """The base name and step names joined by ``+`` (parameters left out)."""
        return "+".join([self.base, *(s.name for s in self.steps)])

    def to_spec(self, options: bool = True) -> str:
        """The spec string that expands to this document (without the store)."""
        head = self.base + (_params_str(self.options) if options else "")
        return "+".join([head, *(s.to_spec() for s in self.steps)])

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "spec": self.to_spec(),
                "base": {"name": self.base, "options": dict(self.options)},
                "steps": [{"name": s.name, "params": dict(s.params)} for s in self.steps],
                "store": self.store, "extractor": self.extractor}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PipelineDoc":
        if int(d.get("schema", 0)) != SCHEMA_VERSION:
            raise BadInputError(f"pipeline document schema {d.get('schema')!r} is not {SCHEMA_VERSION}")
        base = d["base"]
        return cls(base=base["name"], options=dict(base.get("options") or {}),
                   steps=[StepDoc(s["name"], dict(s.get("params") or {})) for s in d.get("steps", [])],
                   store=d.get("store") or "auto", extractor=d.get("extractor"))

    def with_steps(self, extra: list[StepDoc]) -> "PipelineDoc":
        return PipelineDoc(self.base, dict(self.options), [*self.steps, *extra], self.store, self.extractor)


def parse_spec(spec: str, options: dict[str, Any] | None = None, store: str | None = None) -> PipelineDoc:
    """The document a spec string stands for; ``options`` (CLI flags) join the base's options."""
    parts = split_top(spec.strip(), "+")
    if not parts or not parts[0]:
        raise BadInputError("empty pipeline spec")
    base, base_opts = parse_call(parts[0])
    steps = [StepDoc(*parse_call(p)) for p in parts[1:]]
    merged = {**base_opts, **{k: v for k, v in (options or {}).items() if v is not None}}
    return PipelineDoc(base, merged, steps, store or "auto")


def parse_steps(text: str) -> list[StepDoc]:
    """Re-rank steps alone (``"aqe"``, ``"dba+aqe(alpha=3)"``, ``"sv diffusion"``, ``"aqe,krnn"``)."""
    text = text.strip()
    if not text:
        return []
    if "(" not in text and ":" not in text:
        text = re.sub(r"[\s,]+", "+", text)
    return [StepDoc(*parse_call(p)) for p in split_top(text, "+") if p.strip()]


def parse_call(text: str) -> tuple[str, dict[str, Any]]:
    """``name(k=v, ...)`` or ``name:k=v,...`` or ``name`` -> (name, params)."""
    text = text.strip()
    m = re.match(r"^([^(:]+)\((.*)\)$", text, re.S)
    if m:
        name, body = m.group(1).strip(), m.group(2)
    elif ":" in text:
        name, body = (x.strip() for x in text.split(":", 1))
    else:
        name, body = text, ""
    if not _NAME.match(name):
        raise BadInputError(f"bad name {name!r} in pipeline spec (expected e.g. default+aqe(alpha=3))")
    params: dict[str, Any] = {}
    for item in split_top(body, ","):
        if not item.strip():
            continue
        if "=" not in item:
            raise BadInputError(f"{name}: parameter {item.strip()!r} needs a value (name=value)")
        k, v = (x.strip() for x in item.split("=", 1))
        if not _NAME.match(k):
            raise BadInputError(f"{name}: bad parameter name {k!r}")
        params[k] = parse_value(v)
    return name, params


def parse_value(v: str) -> Any:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets and quotes."""
    out, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise BadInputError(f"unbalanced ')' in {text!r}")
        elif ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if depth or quote:
        raise BadInputError(f"unbalanced brackets or quotes in {text!r}")
    out.append("".join(cur))
    return [s.strip() for s in out]


def _params_str(params: dict[str, Any]) -> str:
    if not params:
        return ""
    return "(" + ",".join(f"{k}={_value_str(v)}" for k, v in params.items()) + ")"


def _value_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "'" + ",".join(str(x) for x in v) + "'"
    s = str(v)
    return s if re.match(r"^[\w./~-]+$", s) and parse_value(s) == s else json.dumps(s)
