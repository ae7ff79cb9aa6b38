"""The errors lookalike raises on purpose: each says what a user can fix, in one line.

The CLI and the HTTP layer turn these (and only these) into messages and 4xx answers; any other
exception is a bug, reported as such (a 500 with a logged traceback, "internal error" on the CLI).
"""
from __future__ import annotations


class LookalikeError(Exception):
    """Base class: ``str(e)`` is a one-line message for the user."""

    http_status = 400


class BadInputError(LookalikeError, ValueError):
    """An argument, option, spec string or query that cannot be used as given."""

    http_status = 400


class ImageError(BadInputError):
    """An image that cannot be used; ``str()`` names the file and the reason."""

    http_status = 422

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class NotFoundError(LookalikeError, KeyError):
    """An index, image id, pipeline, step or file that does not exist."""

    http_status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConflictError(LookalikeError):
    """The request contradicts the index (another pipeline, other extractor settings)."""

    http_status = 409


class BusyError(LookalikeError):
    """Another process is writing the index; try again when it has finished."""

    http_status = 409


class UnsupportedError(LookalikeError, NotImplementedError):
    """The index's pipeline cannot do this (e.g. text queries on the colour pipeline)."""

    http_status = 501
