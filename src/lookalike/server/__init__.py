"""The search server: HTTP API and web page over an index (``lookalike serve``)."""
from lookalike.server.app import create_app

__all__ = ["create_app"]
