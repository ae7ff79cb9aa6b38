"""More named pipelines, registered on import (one line each; the methods live in features/)."""
from __future__ import annotations
