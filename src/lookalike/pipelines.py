"""More named pipelines, registered on import (one line each; the methods live in features/)."""
from __future__ import annotations
from .features.local import plugin as _local  # noqa: E402,F401  sift-bow, orb-bow, sift-vlad; sv step
from .features import deep_pipes as _deep  # noqa: E402,F401  fc, spoc, mac, rmac, gem, crow, scda, pwa, cam, fusion-gem-crow (+ -pcaw)
from .text import plugin as _text  # noqa: E402,F401  text pipeline; text search hooks (keyword, MiniLM, zero-shot, bridge)
